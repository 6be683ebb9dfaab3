//! Cross-loop wake-ups with `IORING_OP_MSG_RING` (5.18+).
//!
//! When a thread that runs an io_uring loop wakes another io_uring loop
//! (the target's `SleepGate` found it asleep), it queues a `MSG_RING` SQE
//! in its *own* ring that posts a CQE with [`MSG_RING_WAKE_UD`] straight
//! into the target's completion queue, and submits it: one
//! `io_uring_enter` on the sender and no eventfd write or read at all. The
//! target's reap treats that CQE as a wake-up (like the eventfd read's).
//! Everywhere else (a thread without an io_uring loop, a kernel without
//! the opcode, the feature switched off, the sender's ring busy or its SQ
//! full) the eventfd path runs as before.
//!
//! # Lifetime of the target's ring fd
//!
//! The notifier, shared by every `LoopHandle` and waker of the target,
//! holds its own `dup` of the target's ring fd. The fd number a sender
//! uses therefore stays open, and names the same ring, for as long as any
//! sender can reach the notifier, even after the target loop is gone (a
//! message then lands in a ring nobody reads, freed with the last fd); it
//! can never be a closed or reused descriptor.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use io_uring::{opcode, squeue, types};

use super::notify::EventFd;
use super::ring::Inner;
use crate::driver::Notify;

/// user_data of the CQE a `MSG_RING` posts into the target ring.
pub(super) const MSG_RING_WAKE_UD: u64 = u64::MAX - 2;
/// user_data of the `MSG_RING` SQE itself. It is sent with
/// `IOSQE_CQE_SKIP_SUCCESS` (5.17, older than MSG_RING), so only a failure
/// posts a CQE on the sender's ring ([`sent_failed`]); a success costs the
/// sender no completion and so no extra `io_uring_enter`.
pub(super) const MSG_RING_SENT_UD: u64 = u64::MAX - 3;

static FAILED_MSG_RING: AtomicU64 = AtomicU64::new(0);

/// The eventfds of every io_uring loop that can receive `MSG_RING`s (dead
/// entries are pruned as loops come and go), for [`sent_failed`].
static TARGETS: std::sync::Mutex<Vec<std::sync::Weak<EventFd>>> = std::sync::Mutex::new(Vec::new());

/// Records `eventfd` as a `MSG_RING` target.
pub(super) fn register_target(eventfd: &Arc<EventFd>) {
    let mut targets = TARGETS.lock().unwrap_or_else(|e| e.into_inner());
    targets.retain(|t| t.strong_count() > 0);
    targets.push(Arc::downgrade(eventfd));
}

/// A `MSG_RING` we sent failed (`res` < 0): its target was not woken and
/// its CQE does not say which it was, so every live target is woken through
/// its eventfd (a spurious wake-up is harmless; a lost one could stall a
/// loop).
pub(super) fn sent_failed(res: i32) {
    FAILED_MSG_RING.fetch_add(1, Ordering::Relaxed);
    crate::debug::debug_log(format_args!(
        "ringloop: a MSG_RING wake-up failed ({}); waking every loop by eventfd",
        std::io::Error::from_raw_os_error(-res)
    ));
    let targets: Vec<Arc<EventFd>> = TARGETS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    for t in targets {
        t.notify();
    }
}

static SENT_MSG_RING: AtomicU64 = AtomicU64::new(0);
static SENT_EVENTFD: AtomicU64 = AtomicU64::new(0);
static RECEIVED_MSG_RING: AtomicU64 = AtomicU64::new(0);
static RECEIVED_EVENTFD: AtomicU64 = AtomicU64::new(0);

/// Process-wide counts of cross-thread wake-ups of io_uring loops, by
/// path: `(sent by MSG_RING, sent by eventfd write, MSG_RING CQEs reaped,
/// eventfd completions reaped)`.
pub(crate) fn wake_counts() -> [u64; 4] {
    [
        SENT_MSG_RING.load(Ordering::Relaxed),
        SENT_EVENTFD.load(Ordering::Relaxed),
        RECEIVED_MSG_RING.load(Ordering::Relaxed),
        RECEIVED_EVENTFD.load(Ordering::Relaxed),
    ]
}

pub(super) fn count_received_msg_ring() {
    RECEIVED_MSG_RING.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn count_received_eventfd() {
    RECEIVED_EVENTFD.fetch_add(1, Ordering::Relaxed);
}

thread_local! {
    /// This thread's io_uring driver that may send `MSG_RING`s (the last
    /// one built here with the feature on and the opcode probed; once it is
    /// dropped, this thread's wake-ups use the eventfd path).
    static SENDER: RefCell<Weak<Inner>> = const { RefCell::new(Weak::new()) };
}

/// Our own descriptor of `ring`'s file (`None` if `dup` fails: then the
/// eventfd path is used).
pub(super) fn dup_ring_fd(ring: &io_uring::IoUring) -> Option<OwnedFd> {
    // SAFETY: `ring` owns this fd and is borrowed for the whole call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(ring.as_raw_fd()) };
    fd.try_clone_to_owned().ok()
}

/// Makes `inner` this thread's `MSG_RING` sender.
pub(super) fn register_sender(inner: &Rc<Inner>) {
    let _ = SENDER.try_with(|s| *s.borrow_mut() = Rc::downgrade(inner));
}

/// A loop's wake-up handle: `MSG_RING` into `ring` when the caller's thread
/// can send one, else the eventfd.
pub(super) struct RingNotifier {
    pub(super) eventfd: Arc<EventFd>,
    /// A `dup` of the target's ring fd (`None`: MSG_RING off for it).
    pub(super) ring: Option<OwnedFd>,
}

impl Notify for RingNotifier {
    fn notify(&self) {
        if let Some(ring) = &self.ring
            && send_from_this_thread(ring.as_raw_fd())
        {
            SENT_MSG_RING.fetch_add(1, Ordering::Relaxed);
            return;
        }
        SENT_EVENTFD.fetch_add(1, Ordering::Relaxed);
        self.eventfd.notify();
    }
}

/// Queues and submits a `MSG_RING` to `target` on this thread's ring;
/// false when there is none, it is busy (borrowed: we are inside its
/// driver), closed or has a backlog, or the SQE could not be submitted
/// now. (A loop waking itself, which only happens while it is not asleep,
/// would just post a harmless CQE to its own ring.)
fn send_from_this_thread(target: i32) -> bool {
    SENDER
        .try_with(|s| {
            let Some(inner) = s.borrow().upgrade() else {
                return false;
            };
            let Ok(mut core) = inner.core.try_borrow_mut() else {
                return false;
            };
            if core.closed || core.closing || !core.backlog.is_empty() {
                return false;
            }
            let entry = opcode::MsgRingData::new(types::Fd(target), 0, MSG_RING_WAKE_UD, None)
                .build()
                .flags(squeue::Flags::SKIP_SUCCESS)
                .user_data(MSG_RING_SENT_UD);
            // The target fd stays open while `self` (its owner) is borrowed by
            // our caller, and the kernel takes its own reference at submit.
            // SAFETY: a MSG_RING data message references no memory; its fd stays open (above).
            if unsafe { core.ring.submission().push(&entry) }.is_err() {
                return false;
            }
            core.stats.sqes += 1;
            // Submitted now: the target must not wait for our next enter. If
            // this fails the SQE goes with our next submit (a late, harmless
            // extra wake-up) and the eventfd wakes the target now.
            core.ring.submit().is_ok()
        })
        .unwrap_or(false)
}
