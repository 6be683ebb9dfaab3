//! The process-wide part of signal handling: one `sigaction` handler per
//! signal number, a self-pipe, per-signal delivery counters and the list of
//! listening streams (of every loop and thread).
//!
//! The handler only does async-signal-safe things: an atomic increment of
//! the signal's counter, a one-byte `write(2)` to the non-blocking pipe, and
//! a call of the handler that was installed before ours (chaining). errno is
//! saved and restored around it.
//!
//! Streams wait for the pipe's read end to become readable (through their
//! own loop's driver); whichever stream wakes first drains the pipe and
//! broadcasts: every listener of a signal whose counter moved since the last
//! broadcast gets its `Waker` woken (cross-thread wake-ups are fine: a
//! ringloop `Waker` is `Send + Sync`). A stream yields when the counter of
//! its signal differs from the value it saw last, so several deliveries
//! between two polls are reported once (coalesced), and a pipe that fills up
//! (nobody listening for a long time) loses nothing but bytes.
//!
//! The pipe and the handlers live until the process exits: a handler is never
//! uninstalled, because another thread may be inside it at any moment and the
//! previous disposition may have been a default action the program no longer
//! wants.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use libc::c_int;
use slab::Slab;

/// Signal numbers are `1..NSIG` (Linux: 64 signals incl. real-time ones;
/// other Unixes have fewer and `sigaction` rejects the rest).
pub(crate) const NSIG: usize = 65;

/// Signals that cannot be caught (SIGKILL, SIGSTOP) or whose handler must not
/// return (the synchronous fault signals); the same list as tokio's.
const FORBIDDEN: [c_int; 5] = [libc::SIGKILL, libc::SIGSTOP, libc::SIGILL, libc::SIGFPE, libc::SIGSEGV];

/// Deliveries per signal, incremented by the handler.
static COUNTS: [AtomicUsize; NSIG] = [const { AtomicUsize::new(0) }; NSIG];
/// The counter values the last broadcast woke listeners for.
static BROADCAST: [AtomicUsize; NSIG] = [const { AtomicUsize::new(0) }; NSIG];
/// The self-pipe's write end (`-1` until created; never closed).
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
/// The handler that was installed before ours (0: none to call).
static PREV_HANDLER: [AtomicUsize; NSIG] = [const { AtomicUsize::new(0) }; NSIG];
/// Whether `PREV_HANDLER` takes `(sig, siginfo, context)` (`SA_SIGINFO`).
static PREV_SIGINFO: [AtomicBool; NSIG] = [const { AtomicBool::new(false) }; NSIG];

struct Listener {
    sig: usize,
    waker: Option<Waker>,
}

struct Globals {
    installed: [bool; NSIG],
    /// The self-pipe's read end (non-blocking; never closed).
    read_fd: RawFd,
    listeners: Slab<Listener>,
}

static GLOBALS: Mutex<Globals> = Mutex::new(Globals {
    installed: [false; NSIG],
    read_fd: -1,
    listeners: Slab::new(),
});

fn globals() -> MutexGuard<'static, Globals> {
    // The registry's state stays consistent across a panic (no code that can
    // panic runs under the lock), so a poisoned lock is still usable.
    GLOBALS.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "emscripten"))]
fn errno_location() -> *mut c_int {
    // SAFETY: returns the calling thread's errno slot; no preconditions.
    unsafe { libc::__errno_location() }
}

#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "dragonfly"
))]
fn errno_location() -> *mut c_int {
    // SAFETY: returns the calling thread's errno slot; no preconditions.
    unsafe { libc::__error() }
}

#[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
fn errno_location() -> *mut c_int {
    // SAFETY: returns the calling thread's errno slot; no preconditions.
    unsafe { libc::__errno() }
}

#[cfg(any(target_os = "solaris", target_os = "illumos"))]
fn errno_location() -> *mut c_int {
    // SAFETY: returns the calling thread's errno slot; no preconditions.
    unsafe { libc::___errno() }
}

/// The signal handler (`SA_SIGINFO` form). Async-signal-safe: atomics,
/// `write(2)` and the previous handler only.
extern "C" fn on_signal(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let errno = errno_location();
    // SAFETY: `errno` is this thread's errno slot, valid for the thread's life.
    let saved = unsafe { *errno };
    let idx = sig as usize;
    if idx < NSIG {
        COUNTS[idx].fetch_add(1, Ordering::SeqCst);
        let fd = WRITE_FD.load(Ordering::SeqCst);
        if fd >= 0 {
            let byte = sig as u8;
            // A full pipe (EAGAIN) loses only the byte: the counter above
            // carries the delivery.
            // SAFETY: one-byte write from a local into the never-closed self-pipe.
            unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
        }
        let prev = PREV_HANDLER[idx].load(Ordering::SeqCst);
        if prev != 0 {
            if PREV_SIGINFO[idx].load(Ordering::SeqCst) {
                // `prev` is the `SA_SIGINFO` handler `sigaction` reported before
                // ours was installed (neither SIG_DFL nor SIG_IGN); it gets our
                // own arguments unchanged.
                let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    // SAFETY: `prev` is a valid SA_SIGINFO handler address.
                    unsafe { std::mem::transmute::<usize, _>(prev) };
                f(sig, info, ctx);
            } else {
                // SAFETY: as above, for a plain `sa_handler`.
                let f: extern "C" fn(c_int) = unsafe { std::mem::transmute::<usize, _>(prev) };
                f(sig);
            }
        }
    }
    // SAFETY: as above.
    unsafe { *errno = saved };
}

/// The self-pipe, both ends close-on-exec and non-blocking (one `pipe2`
/// where it exists).
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
fn cloexec_nonblocking_pipe() -> io::Result<[c_int; 2]> {
    let mut fds = [-1 as c_int; 2];
    // SAFETY: `fds` is a valid two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("ringloop::signal: pipe2 failed: {e}")));
    }
    Ok(fds)
}

/// The self-pipe, both ends close-on-exec and non-blocking (`pipe` + `fcntl`).
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
fn cloexec_nonblocking_pipe() -> io::Result<[c_int; 2]> {
    let mut fds = [-1 as c_int; 2];
    // SAFETY: `fds` is a valid two-int array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("ringloop::signal: pipe failed: {e}")));
    }
    for fd in fds {
        // SAFETY: fcntl with integer arguments on an fd we just created.
        let res = if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            Err(io::Error::last_os_error())
        } else {
            crate::io::set_nonblocking(fd, true)
        };
        if let Err(e) = res {
            // SAFETY: closing the two fds we just created and own.
            unsafe {
                libc::close(fds[0]);
                libc::close(fds[1]);
            }
            return Err(e);
        }
    }
    Ok(fds)
}

fn ensure_pipe(g: &mut Globals) -> io::Result<()> {
    if g.read_fd >= 0 {
        return Ok(());
    }
    let fds = cloexec_nonblocking_pipe()?;
    g.read_fd = fds[0];
    WRITE_FD.store(fds[1], Ordering::SeqCst);
    Ok(())
}

fn install(g: &mut Globals, sig: c_int) -> io::Result<()> {
    let idx = sig as usize;
    if g.installed[idx] {
        return Ok(());
    }
    // SAFETY: an all-zero `sigaction` is a valid value (SIG_DFL, no flags,
    // empty mask) that the kernel overwrites.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: querying the current action into a valid out-pointer.
    if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("ringloop::signal: sigaction({sig}) failed: {e}"),
        ));
    }
    // Chain to a previous handler (not to a default or ignore disposition).
    // Stored before ours is installed so the handler never sees it half-set.
    let prev = old.sa_sigaction;
    if prev != libc::SIG_DFL && prev != libc::SIG_IGN {
        PREV_SIGINFO[idx].store(old.sa_flags & libc::SA_SIGINFO != 0, Ordering::SeqCst);
        PREV_HANDLER[idx].store(prev, Ordering::SeqCst);
    }
    // SAFETY: as above.
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    new.sa_sigaction = on_signal as *const () as usize;
    new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
    // SAFETY: initialising the mask of a local `sigaction`.
    unsafe { libc::sigemptyset(&mut new.sa_mask) };
    // SAFETY: installs `on_signal`, which is async-signal-safe and lives for
    // the whole program (a plain `extern "C" fn`).
    if unsafe { libc::sigaction(sig, &new, std::ptr::null_mut()) } < 0 {
        let e = io::Error::last_os_error();
        PREV_HANDLER[idx].store(0, Ordering::SeqCst);
        return Err(io::Error::new(
            e.kind(),
            format!("ringloop::signal: sigaction({sig}) failed: {e}"),
        ));
    }
    g.installed[idx] = true;
    Ok(())
}

/// One listening stream's entry in the registry; removed on drop.
#[derive(Debug)]
pub(crate) struct Registration {
    key: usize,
    sig: usize,
    /// The signal's counter when this stream last yielded (or registered).
    seen: usize,
}

/// Installs the handler for `sig` (once per process) and registers a
/// listener that sees deliveries from now on.
pub(crate) fn register(sig: c_int) -> io::Result<Registration> {
    if sig <= 0 || sig as usize >= NSIG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ringloop::signal: {sig} is not a signal number"),
        ));
    }
    if FORBIDDEN.contains(&sig) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "ringloop::signal: signal {sig} cannot be handled (SIGKILL, SIGSTOP, SIGILL, SIGFPE, SIGSEGV are refused)"
            ),
        ));
    }
    let mut g = globals();
    ensure_pipe(&mut g)?;
    install(&mut g, sig)?;
    let idx = sig as usize;
    let seen = COUNTS[idx].load(Ordering::SeqCst);
    let key = g.listeners.insert(Listener { sig: idx, waker: None });
    Ok(Registration { key, sig: idx, seen })
}

impl Registration {
    /// Whether the signal was delivered since this stream last looked; if so,
    /// the new deliveries are consumed (coalesced into one).
    pub(crate) fn take_delivery(&mut self) -> bool {
        let now = COUNTS[self.sig].load(Ordering::SeqCst);
        if now != self.seen {
            self.seen = now;
            true
        } else {
            false
        }
    }

    /// The waker a broadcast for this signal wakes.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut g = globals();
        if let Some(l) = g.listeners.get_mut(self.key) {
            match &l.waker {
                Some(w) if w.will_wake(waker) => {}
                _ => {
                    let old = l.waker.replace(waker.clone());
                    drop(g);
                    drop(old);
                }
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let removed = globals().listeners.try_remove(self.key);
        drop(removed);
    }
}

/// A new fd for the self-pipe's read end (a `dup`, so each stream can own and
/// register its own; they share the one pipe).
pub(crate) fn dup_read_end() -> io::Result<RawFd> {
    let fd = globals().read_fd;
    if fd < 0 {
        return Err(io::Error::other("ringloop::signal: the signal pipe does not exist yet"));
    }
    // SAFETY: duplicating an fd that is never closed.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("ringloop::signal: dup failed: {e}")));
    }
    Ok(new)
}

/// Empties the self-pipe, then wakes every listener of each signal whose
/// counter moved since the last broadcast.
pub(crate) fn drain_and_broadcast() {
    let fd = globals().read_fd;
    if fd >= 0 {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reading into a local buffer from the never-closed,
            // non-blocking pipe.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                continue;
            }
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
    }
    let mut to_wake = Vec::new();
    {
        let g = globals();
        for sig in 1..NSIG {
            let now = COUNTS[sig].load(Ordering::SeqCst);
            if BROADCAST[sig].swap(now, Ordering::SeqCst) != now {
                to_wake.extend(
                    g.listeners
                        .iter()
                        .filter(|(_, l)| l.sig == sig)
                        .filter_map(|(_, l)| l.waker.clone()),
                );
            }
        }
    }
    for w in to_wake {
        w.wake();
    }
}
