//! [`ThreadBound`]: a `Send + Sync` wrapper for loop-thread-only values.
//!
//! ringloop's I/O objects and tasks are `!Send`: they belong to the loop of
//! the thread that made them. Some libraries demand `Send` anyway, although
//! on a ringloop they would only ever touch the value on that same thread:
//! hyper's upgrades (`hyper::upgrade::Upgraded` boxes the connection as
//! `dyn Send`), so WebSocket through hyper; frameworks whose handler futures
//! must be `Send` (axum). `ThreadBound` lets such values through the type
//! check and keeps the promise at run time:
//!
//! * every access (`Deref`, `poll`, the I/O traits) checks that the current
//!   thread is the one that made the wrapper. On another thread `Deref` and
//!   `Future::poll` panic, the I/O traits return an
//!   [`io::Error`] (kind `Other`), and [`ThreadBound::get`]
//!   returns [`WrongThread`];
//! * dropping it on another thread leaks the inner value instead of running
//!   its destructor there (a loop-bound value must not be dropped on a
//!   thread that does not own it).
//!
//! The check is one thread-local read and a compare per access.

use std::fmt;
use std::future::Future;
use std::io;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

/// A value usable only on the thread that wrapped it, but `Send + Sync` so
/// it passes `Send` bounds. See the [module docs](self) for the rules.
///
/// ```
/// use ringloop::ThreadBound;
/// use std::rc::Rc;
///
/// fn needs_send<T: Send>(_: &T) {}
///
/// let v = ThreadBound::new(Rc::new(5)); // Rc is !Send
/// needs_send(&v);
/// assert_eq!(**v, 5); // fine on this thread
/// let err = std::thread::spawn(move || {
///     let r = v.get().map(|rc| **rc);
///     (r.is_err(), v) // `v` goes back to its thread
/// })
/// .join()
/// .unwrap();
/// assert!(err.0);
/// ```
pub struct ThreadBound<T> {
    value: ManuallyDrop<T>,
    owner: u64,
}

// SAFETY: the inner value is only ever reached (borrowed, polled, dropped)
// on the thread whose token is `owner`: every accessor checks
// `is_owner_thread()` first, and `Drop` leaks the value instead of dropping
// it elsewhere. Moving the wrapper itself between threads moves only bytes.
unsafe impl<T> Send for ThreadBound<T> {}
// SAFETY: a shared reference gives access to the inner value only through
// the same owner-thread check, so no two threads ever reach it.
unsafe impl<T> Sync for ThreadBound<T> {}

/// The error of using a [`ThreadBound`] off the thread that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongThread(());

impl fmt::Display for WrongThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ringloop::ThreadBound used off the thread that owns it")
    }
}

impl std::error::Error for WrongThread {}

impl From<WrongThread> for io::Error {
    fn from(e: WrongThread) -> io::Error {
        io::Error::other(e)
    }
}

/// This thread's token: unique for the life of the process (never reused,
/// unlike addresses of thread-locals); 0 while thread-locals are being torn
/// down, which matches no owner.
fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TOKEN.try_with(|t| *t).unwrap_or(0)
}

impl<T> ThreadBound<T> {
    /// Wraps `value`, bound to the current thread.
    pub fn new(value: T) -> ThreadBound<T> {
        let owner = thread_token();
        assert_ne!(owner, 0, "ThreadBound::new during thread teardown");
        ThreadBound {
            value: ManuallyDrop::new(value),
            owner,
        }
    }

    /// Whether the current thread is the owner (the one that called `new`).
    pub fn is_owner_thread(&self) -> bool {
        thread_token() == self.owner
    }

    /// The value, or [`WrongThread`] off the owner thread.
    pub fn get(&self) -> Result<&T, WrongThread> {
        if self.is_owner_thread() {
            Ok(&self.value)
        } else {
            Err(WrongThread(()))
        }
    }

    /// The value, or [`WrongThread`] off the owner thread.
    pub fn get_mut(&mut self) -> Result<&mut T, WrongThread> {
        if self.is_owner_thread() {
            Ok(&mut self.value)
        } else {
            Err(WrongThread(()))
        }
    }

    /// Unwraps the value on the owner thread; gives the wrapper back elsewhere.
    pub fn into_inner(self) -> Result<T, ThreadBound<T>> {
        if !self.is_owner_thread() {
            return Err(self);
        }
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the value is
        // taken out exactly once.
        Ok(unsafe { ManuallyDrop::take(&mut this.value) })
    }

    fn pinned(self: Pin<&mut Self>) -> Result<Pin<&mut T>, WrongThread> {
        if !self.is_owner_thread() {
            return Err(WrongThread(()));
        }
        // Structural pinning: the value is never moved out of a pinned
        // wrapper (`into_inner` takes the wrapper by value, which a pinned
        // `!Unpin` wrapper cannot give), and it is dropped in place.
        // SAFETY: the value is structurally pinned, as just explained.
        Ok(unsafe { self.map_unchecked_mut(|s| &mut *s.value) })
    }
}

impl<T> Drop for ThreadBound<T> {
    fn drop(&mut self) {
        if self.is_owner_thread() {
            // SAFETY: dropped exactly once, here, on the owner thread.
            unsafe { ManuallyDrop::drop(&mut self.value) }
        }
        // Elsewhere the value is leaked: its destructor may only run on its
        // own thread.
    }
}

impl<T> Deref for ThreadBound<T> {
    type Target = T;
    /// # Panics
    /// Off the owner thread.
    fn deref(&self) -> &T {
        match self.get() {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }
}

impl<T> DerefMut for ThreadBound<T> {
    /// # Panics
    /// Off the owner thread.
    fn deref_mut(&mut self) -> &mut T {
        match self.get_mut() {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for ThreadBound<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get() {
            Ok(v) => f.debug_tuple("ThreadBound").field(v).finish(),
            Err(_) => f.write_str("ThreadBound(<other thread>)"),
        }
    }
}

/// Polls the inner future; a `!Send` future wrapped this way can be handed
/// to APIs that demand `Send` futures, as long as they poll it on this thread
/// (ringloop's executors always do).
impl<F: Future> Future for ThreadBound<F> {
    type Output = F::Output;
    /// # Panics
    /// Off the owner thread.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.pinned() {
            Ok(f) => f.poll(cx),
            Err(e) => panic!("{e}"),
        }
    }
}

impl<T: futures_io::AsyncRead> futures_io::AsyncRead for ThreadBound<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.pinned() {
            Ok(t) => t.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.pinned() {
            Ok(t) => t.poll_read_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
}

impl<T: futures_io::AsyncBufRead> futures_io::AsyncBufRead for ThreadBound<T> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        match self.pinned() {
            Ok(t) => t.poll_fill_buf(cx),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
    /// Off the owner thread this does nothing (the bytes stay buffered).
    fn consume(self: Pin<&mut Self>, amt: usize) {
        if let Ok(t) = self.pinned() {
            t.consume(amt)
        }
    }
}

impl<T: futures_io::AsyncWrite> futures_io::AsyncWrite for ThreadBound<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.pinned() {
            Ok(t) => t.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.pinned() {
            Ok(t) => t.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.pinned() {
            Ok(t) => t.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.pinned() {
            Ok(t) => t.poll_close(cx),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
}
