//! Registered ("fixed") files for the sockets a loop accepts or creates.
//!
//! A socket's fd is also installed in the ring's file table
//! (`IORING_REGISTER_FILES_UPDATE`), and its operations name the table
//! slot with `IOSQE_FIXED_FILE` instead of the fd: the kernel then skips
//! the fd-table lookup and the file reference count on every operation.
//! The fd itself stays open and is what everything outside io_uring uses
//! (socket options, addresses, `shutdown`, conversions to std types).
//!
//! * The table is registered sparse on first use (`IORING_RSRC_REGISTER_SPARSE`,
//!   5.19; older kernels: a table of `-1` entries, 5.5), at most
//!   `RLIMIT_NOFILE` slots (the kernel refuses more). Loops that never open
//!   a socket never register one.
//! * Table full, or any registration error: the socket simply uses its
//!   plain fd (counted in [`Stats::fixed_full`](super::ring::Stats::fixed_full)); nothing fails.
//! * A table entry holds its own reference to the socket: the socket is
//!   released (a TCP FIN sent) only when both the fd is closed and the slot
//!   is emptied. [`FixedSlot`] lives in the fd's shared handle and empties
//!   its slot when the last handle (and so the last operation using it) is
//!   gone, or before the fd is handed to an asynchronous close.

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};

use super::UringDriver;
use super::ring::Inner;

/// The table's state, in [`Inner`].
pub(crate) struct FixedFiles {
    /// Slots asked for (0: fixed files off).
    wanted: u32,
    state: RefCell<State>,
}

enum State {
    /// Not registered yet (no socket so far).
    Unset,
    /// Registered with `size` slots; `free` holds the empty ones (lowest
    /// last, so it is popped first).
    Ready {
        size: u32,
        free: Vec<u32>,
        pending: Vec<u32>,
    },
    /// Registration failed or fixed files are off: plain fds only.
    Off,
}

impl FixedFiles {
    pub(super) fn new(wanted: u32) -> FixedFiles {
        FixedFiles {
            wanted,
            state: RefCell::new(if wanted == 0 { State::Off } else { State::Unset }),
        }
    }

    /// How many slots the table has or will have (for the description).
    pub(super) fn describe(&self) -> Option<String> {
        match &*self.state.borrow() {
            State::Off if self.wanted == 0 => None,
            State::Off => Some("fixed files unavailable (plain fds)".to_owned()),
            State::Unset => Some(format!("fixed files (up to {} slots)", self.wanted)),
            State::Ready { size, free, .. } => Some(format!(
                "fixed files ({size} slots, {} in use)",
                *size as usize - free.len()
            )),
        }
    }
}

/// A socket's slot in the fixed-file table; empties it when dropped.
pub(crate) struct FixedSlot {
    index: u32,
    owner: Weak<Inner>,
}

impl FixedSlot {
    pub(crate) fn index(&self) -> u32 {
        self.index
    }
}

impl Drop for FixedSlot {
    fn drop(&mut self) {
        // Ring gone: its table went with it (the kernel dropped the entry).
        if let Some(inner) = self.owner.upgrade() {
            release(&inner, self.index);
        }
    }
}

/// The usable table size: what was asked for, at most the soft
/// `RLIMIT_NOFILE` (the kernel's limit for a file table).
fn table_size(wanted: u32) -> u32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the local struct we pass.
    let cap = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(u64::from(u32::MAX)) as u32
    } else {
        1024
    };
    wanted.min(cap)
}

fn register_table(inner: &Inner, wanted: u32) -> io::Result<u32> {
    let size = table_size(wanted);
    if size == 0 {
        return Err(io::Error::other("RLIMIT_NOFILE is 0"));
    }
    let core = inner.core.borrow();
    let sub = core.ring.submitter();
    match sub.register_files_sparse(size) {
        Ok(()) => Ok(size),
        // Before 5.19: no sparse flag, but `-1` entries are empty slots.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL)) => {
            sub.register_files(&vec![-1; size as usize]).map(|()| size)
        }
        Err(e) => Err(e),
    }
}

impl UringDriver {
    /// Installs `fd` (a socket this loop accepted or created) in the ring's
    /// file table; `None` when fixed files are off, unsupported or the
    /// table is full (the caller keeps using the plain fd).
    pub(crate) fn install_fixed(&self, fd: RawFd) -> Option<FixedSlot> {
        let inner = &self.inner;
        let fixed = &inner.fixed;
        let mut state = fixed.state.borrow_mut();
        if let State::Unset = *state {
            *state = match register_table(inner, fixed.wanted) {
                Ok(size) => State::Ready {
                    size,
                    free: (0..size).rev().collect(),
                    pending: Vec::new(),
                },
                Err(e) => {
                    crate::debug::debug_log(format_args!(
                        "ringloop: no io_uring fixed-file table ({e}); sockets use plain fds"
                    ));
                    State::Off
                }
            };
        }
        let State::Ready { free, .. } = &mut *state else {
            return None;
        };
        let Some(index) = free.pop() else {
            inner.core.borrow_mut().stats.fixed_full += 1;
            return None;
        };
        let mut core = inner.core.borrow_mut();
        match core.ring.submitter().register_files_update(index, &[fd]) {
            Ok(1) => {
                core.stats.fixed_installed += 1;
                Some(FixedSlot {
                    index,
                    owner: Rc::downgrade(inner),
                })
            }
            res => {
                free.push(index);
                core.stats.fixed_full += 1;
                crate::debug::debug_log(format_args!(
                    "ringloop: fixed-file install failed ({res:?}); socket uses its plain fd"
                ));
                None
            }
        }
    }

    /// Empties slots whose release found the ring busy (see [`release`]).
    pub(super) fn release_pending_fixed(&self) {
        let pending = match &mut *self.inner.fixed.state.borrow_mut() {
            State::Ready { pending, .. } if !pending.is_empty() => std::mem::take(pending),
            _ => return,
        };
        for index in pending {
            release(&self.inner, index);
        }
    }

    /// Whether sockets get fixed-file slots (asked for, and the table is
    /// registered or not tried yet), for tests.
    #[cfg(test)]
    pub(crate) fn fixed_enabled(&self) -> bool {
        !matches!(*self.inner.fixed.state.borrow(), State::Off)
    }

    /// Slots in use, for tests.
    #[cfg(test)]
    pub(crate) fn fixed_in_use(&self) -> usize {
        match &*self.inner.fixed.state.borrow() {
            State::Ready { size, free, pending } => *size as usize - free.len() - pending.len(),
            _ => 0,
        }
    }
}

/// Empties slot `index` so the table no longer holds the socket, and makes
/// it reusable. If the driver is busy (a drop inside the driver, which its
/// invariants rule out) the slot waits for the next `wait`, which empties
/// it before entering the kernel.
fn release(inner: &Inner, index: u32) {
    let (Ok(mut state), Ok(core)) = (inner.fixed.state.try_borrow_mut(), inner.core.try_borrow()) else {
        if let Ok(mut state) = inner.fixed.state.try_borrow_mut()
            && let State::Ready { pending, .. } = &mut *state
        {
            pending.push(index);
        }
        return;
    };
    let State::Ready { free, .. } = &mut *state else { return };
    match core.ring.submitter().register_files_update(index, &[-1]) {
        Ok(_) => free.push(index),
        Err(e) => {
            // The slot stays out of use; the socket lives until the ring
            // closes. Not expected: the table and the index are ours.
            crate::debug::debug_log(format_args!("ringloop: emptying fixed-file slot {index} failed: {e}"));
        }
    }
}
