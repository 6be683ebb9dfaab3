//! One-shot "wait until readable" for fds that are not read through an
//! operation (a pidfd signals a child's exit this way; the signal pipe is
//! drained with plain non-blocking reads after it).

use std::io;

use ringloop_fallback::Direction;

#[cfg(target_os = "linux")]
use io_uring::{opcode, types};

use super::SharedFd;
use crate::driver::Driver;

/// Resolves once `fd` is readable (or has an error or hang-up pending).
///
/// On io_uring this is a one-shot `IORING_OP_POLL_ADD` for `POLLIN`; on the
/// readiness backend a wait for the reactor's next read report (edge mode:
/// at once, consuming it, if a report came since the last such wait). Either
/// may report readiness that a following non-blocking syscall does not find
/// (another reader was faster): callers must check fully after each wake-up
/// (reap the child, drain the pipe to `EAGAIN`) and poll again.
///
/// Dropping the future cancels the poll (io_uring: AsyncCancel; the fd stays
/// open until the final completion because the op owns a clone of `fd`).
pub(crate) async fn poll_readable(drv: &Driver, fd: &SharedFd) -> io::Result<()> {
    match drv {
        #[cfg(target_os = "linux")]
        Driver::Uring(d) => {
            // SAFETY: the SQE references no memory, only `fd`, which the op's
            // resources keep open until the final completion.
            let op = unsafe {
                d.submit(fd.clone(), |fd| {
                    opcode::PollAdd::new(types::Fd(fd.raw()), libc::POLLIN as u32).build()
                })
            };
            op.await.0.map(drop)
        }
        Driver::Readiness(r) => super::readiness(r, fd, Direction::Read).await,
    }
}
