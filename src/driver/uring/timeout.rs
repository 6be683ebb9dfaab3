//! Waits with a timeout on kernels without `IORING_FEAT_EXT_ARG`: a
//! Timeout SQE, at most one current, replaced ones removed.

use std::time::{Duration, Instant};

use io_uring::{opcode, types};

use super::*;

/// The wait timeout used when EXT_ARG is missing (or disabled for tests):
/// at most one is current; a replaced one is removed with TimeoutRemove and
/// its CQE ignored.
pub(super) struct LegacyTimeout {
    /// Read by the kernel when the Timeout SQE is submitted (the kernel copies
    /// it then); heap-allocated so its address is stable.
    pub(super) ts: Box<types::Timespec>,
    /// The timeout the current wait relies on: (generation, deadline).
    pub(super) current: Option<(u32, Option<Instant>)>,
    pub(super) generation: u32,
    /// Timeout SQEs pushed whose CQE has not been reaped yet.
    pub(super) outstanding: u32,
}

impl Core {
    /// Pushes the wait-timeout SQE for kernels without EXT_ARG, keeping at
    /// most one current: an existing one that fires no later than needed is
    /// reused, a later one is removed first.
    pub(super) fn arm_legacy_timeout(&mut self, remaining: Option<Duration>) {
        let Some(d) = remaining else {
            // An unbounded wait must not be cut short by an old timeout.
            if let Some((generation, _)) = self.legacy.current.take() {
                self.push_timeout_remove(generation);
            }
            return;
        };
        let deadline = Instant::now().checked_add(d);
        if let Some((generation, current)) = self.legacy.current {
            let fires_in_time = match (current, deadline) {
                (Some(current), Some(deadline)) => current <= deadline,
                (_, None) => true,
                (None, Some(_)) => false,
            };
            if fires_in_time {
                return;
            }
            self.push_timeout_remove(generation);
        }
        self.legacy.generation = self.legacy.generation.wrapping_add(1);
        let generation = self.legacy.generation;
        *self.legacy.ts = timespec(d);
        let ts: *const types::Timespec = &*self.legacy.ts;
        let entry = opcode::Timeout::new(ts)
            .build()
            .user_data(WAIT_TIMEOUT_UD | u64::from(generation));
        // `ts` points into `legacy.ts`, a Box owned by `Core` that is
        // only rewritten by the next arm (after this SQE was submitted by the
        // enter that follows) and leaked in `Drop` if timeouts are outstanding.
        // SAFETY: upheld as explained just above.
        unsafe { self.push(entry) };
        self.legacy.outstanding += 1;
        self.legacy.current = Some((generation, deadline));
    }

    pub(super) fn push_timeout_remove(&mut self, generation: u32) {
        let entry = opcode::TimeoutRemove::new(WAIT_TIMEOUT_UD | u64::from(generation))
            .build()
            .user_data(CANCEL_UD);
        // SAFETY: TimeoutRemove references no memory.
        unsafe { self.push(entry) };
    }
}

/// A `Timespec` for `d`, clamped so the kernel's signed seconds stay valid.
pub(crate) fn timespec(d: Duration) -> types::Timespec {
    types::Timespec::new()
        .sec(d.as_secs().min(i64::MAX as u64))
        .nsec(d.subsec_nanos())
}
