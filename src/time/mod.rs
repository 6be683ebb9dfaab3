//! Time: `sleep`, `timeout`, `interval`: futures over the loop's timers.
//!
//! The clock and the timer queue are `crate::timer` (a leaf the loop uses);
//! these futures sit above the loop: they find the current loop's timers
//! through `runtime`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::runtime::{self, TimerAction, Timers};
use crate::timer::{TimerId, add_clamped};

/// Waits until `duration` has elapsed. `sleep(Duration::ZERO)` yields for
/// exactly one loop iteration, like `asyncio.sleep(0)`.
pub fn sleep(duration: Duration) -> Sleep {
    if duration.is_zero() {
        return Sleep {
            deadline: None,
            timer: None,
            yielded: false,
            done: false,
        };
    }
    Sleep {
        deadline: Some(add_clamped(loop_now(), duration)),
        timer: None,
        yielded: false,
        done: false,
    }
}

/// The current loop's clock, else the real clock.
fn loop_now() -> Instant {
    runtime::current_inner()
        .map(|lp| lp.clock.now())
        .unwrap_or_else(Instant::now)
}

/// Waits until the loop clock reaches `deadline` (see [`EventLoop::time`](crate::EventLoop::time)).
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline: Some(deadline),
        timer: None,
        yielded: false,
        done: false,
    }
}

/// Yields to the loop for exactly one iteration (asyncio's `sleep(0)`).
pub fn yield_now() -> Sleep {
    sleep(Duration::ZERO)
}

/// Future returned by [`sleep`], [`sleep_until`] and [`yield_now`].
/// Dropping it cancels its timer. It is `Send` (it holds only a timer id),
/// so `Send` futures that sleep can be spawned from other threads.
///
/// Once it has completed, polling it again returns `Ready` at once, and it
/// is a `FusedFuture` whose `is_terminated` turns true then (so
/// `futures::select!` takes it without `.fuse()`).
pub struct Sleep {
    deadline: Option<Instant>,
    timer: Option<(TimerId, u64)>,
    yielded: bool,
    /// It returned `Ready`.
    done: bool,
}

impl Sleep {
    /// The deadline (`None` for a zero-length yield).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep").field("deadline", &self.deadline).finish()
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        let res = self.poll_sleep(cx);
        match res {
            Poll::Ready(()) => self.done = true,
            Poll::Pending => crate::debug::note_wait(|| "sleep"),
        }
        res
    }
}

impl futures_core::future::FusedFuture for Sleep {
    /// True once the sleep has returned `Ready`.
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl Sleep {
    fn poll_sleep(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.deadline else {
            if self.yielded {
                return Poll::Ready(());
            }
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        };
        let Some(lp) = runtime::current_inner() else {
            // Polled outside any ringloop loop: nothing could ever wake us.
            panic!("ringloop::sleep polled outside a ringloop event loop");
        };
        let loop_id = lp.id();
        if let Some((id, owner)) = self.timer {
            if owner == loop_id {
                let mut timers = lp.timers.borrow_mut();
                if timers.is_gone(id) {
                    self.timer = None;
                    return Poll::Ready(());
                }
                set_waker(&mut timers, id, cx.waker());
                return Poll::Pending;
            }
        }
        // Like asyncio's `call_later`-based sleep, a positive sleep always
        // goes through the timer queue, even when its deadline has passed: it
        // then completes in the next iteration (and needs no clock read here).
        let id = lp
            .timers
            .borrow_mut()
            .insert(deadline, TimerAction::Wake(cx.waker().clone()));
        self.timer = Some((id, loop_id));
        Poll::Pending
    }
}

/// Points a sleep's timer at the waker of its latest poll.
fn set_waker(timers: &mut Timers, id: TimerId, w: &Waker) {
    if let Some(action) = timers.action_mut(id) {
        match action {
            TimerAction::Wake(old) if old.will_wake(w) => {}
            _ => *action = TimerAction::Wake(w.clone()),
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((id, owner)) = self.timer.take() {
            runtime::cancel_timer(owner, id);
        }
    }
}

/// The error of [`timeout`]: the deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}
impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "ringloop: deadline has elapsed")
    }
}

/// Runs `fut` for at most `duration`; on expiry the inner future is dropped
/// (which cancels it) and `Err(Elapsed)` is returned.
///
/// As asyncio's `timeout`/`wait_for`: a zero duration (or a deadline already
/// past at the first poll) returns `Err(Elapsed)` without ever polling `fut`.
/// Afterwards the deadline is checked before the inner future is polled, so
/// of nested timeouts whose deadlines have both passed, the outer one (the
/// earlier deadline) reports the expiry, and its `Err` is the outer result.
/// A duration too large for an `Instant` is clamped to about 30 years.
pub fn timeout<F: Future>(duration: Duration, fut: F) -> Timeout<F> {
    timeout_at(add_clamped(loop_now(), duration), fut)
}

/// Like [`timeout`] with an absolute deadline on the loop clock.
pub fn timeout_at<F: Future>(deadline: Instant, fut: F) -> Timeout<F> {
    Timeout {
        inner: Some(fut),
        sleep: sleep_until(deadline),
        started: false,
        done: false,
    }
}

/// Future returned by [`timeout`]. A `FusedFuture`: `is_terminated` turns
/// true once it has returned `Ready` (`Ok` or `Err(Elapsed)`).
pub struct Timeout<F> {
    inner: Option<F>,
    sleep: Sleep,
    started: bool,
    /// It returned `Ready`.
    done: bool,
}

impl<F: Future> futures_core::future::FusedFuture for Timeout<F> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is structurally pinned (never moved; only dropped
        // in place by assigning `None`); `sleep` and `started` are `Unpin`.
        let this = unsafe { self.get_unchecked_mut() };
        let Some(inner) = this.inner.as_mut() else {
            this.done = true;
            return Poll::Ready(Err(Elapsed(())));
        };
        // The deadline first: on the first poll against the clock (one read
        // per timeout), later through the timer (no clock read).
        let expired = if this.started {
            Pin::new(&mut this.sleep).poll(cx).is_ready()
        } else {
            this.sleep.deadline.is_some_and(|d| d <= loop_now())
        };
        if expired {
            this.inner = None;
            this.done = true;
            return Poll::Ready(Err(Elapsed(())));
        }
        // SAFETY: see above, `inner` is never moved while pinned.
        if let Poll::Ready(v) = unsafe { Pin::new_unchecked(inner) }.poll(cx) {
            this.done = true;
            return Poll::Ready(Ok(v));
        }
        if !this.started {
            this.started = true;
            // Registers the timer; a positive sleep never completes on its
            // first poll.
            let _ = Pin::new(&mut this.sleep).poll(cx);
        }
        Poll::Pending
    }
}

/// What an [`Interval`] does when ticks were missed (the loop was busy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MissedTicks {
    /// Fire the missed ticks back to back, keeping the original schedule.
    Burst,
    /// Restart the schedule from the late tick (`next = now + period`).
    #[default]
    Delay,
    /// Skip missed ticks, staying on the original grid.
    Skip,
}

/// Creates an interval whose first tick completes immediately and whose
/// following ticks come every `period`.
///
/// # Panics
///
/// When `period` is zero.
pub fn interval(period: Duration) -> Interval {
    assert!(!period.is_zero(), "ringloop::interval: period must be non-zero");
    Interval {
        period,
        next: loop_now(),
        sleep: None,
        missed: MissedTicks::default(),
    }
}

/// Periodic ticks; see [`interval`]. Also a `futures_core::Stream` of tick instants.
pub struct Interval {
    period: Duration,
    next: Instant,
    sleep: Option<Sleep>,
    missed: MissedTicks,
}

impl Interval {
    /// Sets the missed-tick behaviour (default [`MissedTicks::Delay`]).
    pub fn set_missed_tick_behavior(&mut self, b: MissedTicks) {
        self.missed = b;
    }
    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }
    /// Waits for the next tick and returns its scheduled instant.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }
    /// Polls for the next tick.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        let sleep = self.sleep.get_or_insert_with(|| sleep_until(self.next));
        if Pin::new(sleep).poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        let scheduled = self.next;
        let now = loop_now();
        let on_schedule = add_clamped(scheduled, self.period);
        self.next = match self.missed {
            MissedTicks::Burst => on_schedule,
            MissedTicks::Delay if now > on_schedule => add_clamped(now, self.period),
            MissedTicks::Delay => on_schedule,
            MissedTicks::Skip if on_schedule <= now => {
                // The first grid point after `now`: scheduled + k * period
                // with k = elapsed / period + 1, computed in u128 nanoseconds.
                let period = self.period.as_nanos();
                let elapsed = now.duration_since(scheduled).as_nanos();
                let offset = elapsed - elapsed % period + period;
                let secs = u64::try_from(offset / 1_000_000_000).unwrap_or(u64::MAX);
                // The remainder is below 10^9, so it fits in a u32.
                let nanos = (offset % 1_000_000_000) as u32;
                add_clamped(scheduled, Duration::new(secs, nanos))
            }
            MissedTicks::Skip => on_schedule,
        };
        Poll::Ready(scheduled)
    }
}

impl futures_core::Stream for Interval {
    type Item = Instant;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Instant>> {
        self.get_mut().poll_tick(cx).map(Some)
    }
}

impl futures_core::stream::FusedStream for Interval {
    /// Never: an interval ticks forever.
    fn is_terminated(&self) -> bool {
        false
    }
}
