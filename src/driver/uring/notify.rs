//! The cross-thread wake-up: an eventfd whose read (or poll) is kept armed
//! in the ring, written only when the loop sleeps.

use std::os::fd::{AsRawFd, OwnedFd};

use io_uring::{opcode, types};

use super::*;

/// The cross-thread wake-up: an eventfd whose read is kept armed in the ring.
pub(super) struct EventFd(pub(super) OwnedFd);

impl Notify for EventFd {
    fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an eventfd we own. An
        // EAGAIN (counter saturated) means a wake-up is already pending.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

/// How the eventfd is watched.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum WakeMode {
    /// An 8-byte IORING_OP_READ into `Core::eventfd_buf`.
    Read,
    /// IORING_OP_POLL_ADD, then a non-blocking read(2) to reset the counter:
    /// for kernels that complete an io_uring read of a non-blocking eventfd
    /// with EAGAIN instead of waiting.
    Poll,
    /// Gave up after repeated errors (logged); cross-thread wake-ups then
    /// only land when something else wakes the ring.
    Off,
}

impl Core {
    pub(super) fn arm_eventfd(&mut self) {
        let fd = types::Fd(self.eventfd.0.as_raw_fd());
        let entry = match self.wake_mode {
            WakeMode::Read => opcode::Read::new(fd, self.eventfd_buf.as_ptr().cast(), 8).build(),
            WakeMode::Poll => opcode::PollAdd::new(fd, libc::POLLIN as u32).build(),
            WakeMode::Off => return,
        };
        // The read targets `eventfd_buf`, a heap u64 owned by `Core`
        // that is freed only when no read is armed (leaked otherwise); the fd
        // is kept open by `self.eventfd` for as long as `Core` lives.
        // SAFETY: upheld as explained just above.
        unsafe { self.push(entry.user_data(EVENTFD_UD)) };
        self.eventfd_armed = true;
    }

    /// Resets the eventfd counter after a poll completion (WakeMode::Poll).
    pub(super) fn drain_eventfd(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local; the fd is ours and
        // non-blocking (EAGAIN just means someone else already drained it).
        let _ = unsafe { libc::read(self.eventfd.0.as_raw_fd(), (&raw mut value).cast(), 8) };
    }
}
