//! [`Barrier`]: asyncio's `Barrier` (Python 3.11).

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::error::BrokenBarrierError;
use super::wait_list::{WaitList, Waiter, wake_all};

/// asyncio's `_BarrierState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Tasks arrive and wait for the last party.
    Filling,
    /// Released: the waiters of the round are leaving; newcomers wait until
    /// all of them have left.
    Draining,
    /// `reset()` while tasks waited: they leave with an error; newcomers
    /// wait until all of them have left.
    Resetting,
    /// `abort()`: every wait fails until `reset()`.
    Broken,
}

/// A barrier for a fixed number of tasks (asyncio's `asyncio.Barrier`,
/// Python 3.11).
///
/// Each [`wait`](Barrier::wait) blocks until `parties` tasks wait, then all
/// of them are released and each gets its arrival index (`0..parties`;
/// the last to arrive gets `parties - 1` and does not block). The barrier
/// then refills for the next round; tasks that arrive while the released
/// ones are still leaving wait for them to leave first.
///
/// * [`abort`](Barrier::abort) breaks the barrier: current and future waits
///   fail with [`BrokenBarrierError`] until [`reset`](Barrier::reset).
/// * [`reset`](Barrier::reset) makes the current waiters fail with
///   [`BrokenBarrierError`] and returns the barrier to its empty state.
/// * Cancellation is dropping: a dropped waiter leaves the barrier (it no
///   longer counts towards `parties`), as asyncio's `finally` does.
///
/// Clones share the same barrier. `reset` and `abort` are synchronous here
/// (asyncio's are coroutines that only take the barrier's lock).
///
/// ```
/// # use ringloop::sync::Barrier;
/// # let lp = ringloop::EventLoop::new().unwrap();
/// lp.run_until_complete(async {
///     let b = Barrier::new(2);
///     let b2 = b.clone();
///     let other = ringloop::spawn(async move { b2.wait().await });
///     ringloop::yield_now().await; // let `other` arrive first
///     assert_eq!(b.wait().await, Ok(1));
///     assert_eq!(other.await.unwrap(), Ok(0));
/// })
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct Barrier {
    inner: Rc<BarrierInner>,
}

struct BarrierInner {
    parties: usize,
    state: RefCell<BarrierState>,
}

struct BarrierState {
    phase: Phase,
    /// Tasks inside `wait` (arrived and not yet left), asyncio's `_count`.
    count: usize,
    /// Everyone waiting for a phase change (asyncio's condition variable).
    waiters: WaitList,
}

impl BarrierState {
    /// asyncio's `notify_all`.
    fn notify_all(&mut self, wakers: &mut Vec<Waker>) {
        while let Some(node) = self.waiters.pop_waiting() {
            wakers.extend(node.notify());
        }
    }

    /// asyncio's `_exit`, after `count -= 1`: the last task to leave ends
    /// a drain or a reset.
    fn leave(&mut self, wakers: &mut Vec<Waker>) {
        self.count = self.count.saturating_sub(1);
        if self.count == 0 {
            if matches!(self.phase, Phase::Resetting | Phase::Draining) {
                self.phase = Phase::Filling;
            }
            self.notify_all(wakers);
        }
    }
}

impl Barrier {
    /// A barrier for `parties` tasks. `0` is treated as `1` (asyncio raises
    /// `ValueError` for `parties < 1`).
    pub fn new(parties: usize) -> Self {
        Barrier {
            inner: Rc::new(BarrierInner {
                parties: parties.max(1),
                state: RefCell::new(BarrierState {
                    phase: Phase::Filling,
                    count: 0,
                    waiters: WaitList::new(),
                }),
            }),
        }
    }

    /// Wait until `parties` tasks wait; resolves to this task's arrival
    /// index, or [`BrokenBarrierError`] if the barrier is (or gets) aborted
    /// or is reset while this task waits.
    pub fn wait(&self) -> BarrierWait<'_> {
        BarrierWait {
            barrier: self,
            state: WaitState::Init,
        }
    }

    /// Fail the current waiters with [`BrokenBarrierError`] and return the
    /// barrier to its empty state (once they have left). Also repairs an
    /// aborted barrier.
    pub fn reset(&self) {
        let mut wakers = Vec::new();
        {
            let mut st = self.inner.state.borrow_mut();
            if st.count > 0 {
                st.phase = Phase::Resetting;
            } else {
                st.phase = Phase::Filling;
            }
            st.notify_all(&mut wakers);
        }
        wake_all(wakers);
    }

    /// Break the barrier: current and future waits fail with
    /// [`BrokenBarrierError`] until [`reset`](Barrier::reset).
    pub fn abort(&self) {
        let mut wakers = Vec::new();
        {
            let mut st = self.inner.state.borrow_mut();
            st.phase = Phase::Broken;
            st.notify_all(&mut wakers);
        }
        wake_all(wakers);
    }

    /// The number of tasks needed to pass the barrier.
    pub fn parties(&self) -> usize {
        self.inner.parties
    }

    /// The number of tasks waiting for the barrier to fill (0 while it
    /// drains, resets or is broken, as in asyncio).
    pub fn n_waiting(&self) -> usize {
        let st = self.inner.state.borrow();
        if st.phase == Phase::Filling { st.count } else { 0 }
    }

    /// Whether the barrier is broken ([`abort`](Barrier::abort)).
    pub fn broken(&self) -> bool {
        self.inner.state.borrow().phase == Phase::Broken
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.borrow();
        f.debug_struct("Barrier")
            .field("parties", &self.inner.parties)
            .field("phase", &st.phase)
            .field("count", &st.count)
            .finish()
    }
}

enum WaitState {
    /// Not arrived yet.
    Init,
    /// Not arrived: waiting for a drain or reset to end.
    Blocked(Rc<Waiter>),
    /// Arrived (counted) with this index, waiting for the release.
    Arrived(Rc<Waiter>, usize),
    Done(Result<usize, BrokenBarrierError>),
}

/// Future returned by [`Barrier::wait`].
///
/// Polling it again after it has completed returns the same result.
#[must_use = "futures do nothing unless polled"]
pub struct BarrierWait<'a> {
    barrier: &'a Barrier,
    state: WaitState,
}

impl BarrierWait<'_> {
    /// asyncio's `_block` then the arrival: `None` when it must wait.
    fn arrive(&mut self, cx: &mut Context<'_>, wakers: &mut Vec<Waker>) -> Option<Result<usize, BrokenBarrierError>> {
        let inner = &self.barrier.inner;
        let mut st = inner.state.borrow_mut();
        match st.phase {
            Phase::Broken => return Some(Err(BrokenBarrierError)),
            Phase::Draining | Phase::Resetting => {
                self.state = WaitState::Blocked(st.waiters.push(Some(cx.waker())));
                return None;
            }
            Phase::Filling => {}
        }
        let index = st.count;
        st.count += 1;
        if index + 1 == inner.parties {
            // The last party releases everyone and leaves at once.
            st.phase = Phase::Draining;
            st.notify_all(wakers);
            st.leave(wakers);
            return Some(Ok(index));
        }
        self.state = WaitState::Arrived(st.waiters.push(Some(cx.waker())), index);
        None
    }
}

impl Future for BarrierWait<'_> {
    type Output = Result<usize, BrokenBarrierError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut wakers = Vec::new();
        let out = match std::mem::replace(&mut this.state, WaitState::Init) {
            WaitState::Done(r) => Some(r),
            WaitState::Init => this.arrive(cx, &mut wakers),
            WaitState::Blocked(node) => {
                if node.is_notified() {
                    this.arrive(cx, &mut wakers)
                } else {
                    node.set_waker(cx.waker());
                    this.state = WaitState::Blocked(node);
                    None
                }
            }
            WaitState::Arrived(node, index) => {
                let mut st = this.barrier.inner.state.borrow_mut();
                if !node.is_notified() {
                    node.set_waker(cx.waker());
                    this.state = WaitState::Arrived(node, index);
                    None
                } else {
                    match st.phase {
                        // A wake-up that changed nothing: wait again.
                        Phase::Filling => {
                            this.state = WaitState::Arrived(st.waiters.push(Some(cx.waker())), index);
                            None
                        }
                        Phase::Draining => {
                            st.leave(&mut wakers);
                            Some(Ok(index))
                        }
                        Phase::Resetting | Phase::Broken => {
                            st.leave(&mut wakers);
                            Some(Err(BrokenBarrierError))
                        }
                    }
                }
            }
        };
        wake_all(wakers);
        match out {
            Some(r) => {
                this.state = WaitState::Done(r);
                Poll::Ready(r)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for BarrierWait<'_> {
    fn drop(&mut self) {
        let mut wakers = Vec::new();
        let stale = {
            let mut st = self.barrier.inner.state.borrow_mut();
            match &self.state {
                WaitState::Blocked(node) => st.waiters.cancel(node),
                WaitState::Arrived(node, _) => {
                    // Cancelled after arriving: leave the barrier, as
                    // asyncio's `finally: count -= 1; _exit()`.
                    let stale = st.waiters.cancel(node);
                    st.leave(&mut wakers);
                    stale
                }
                WaitState::Init | WaitState::Done(_) => None,
            }
        };
        drop(stale);
        wake_all(wakers);
    }
}

impl fmt::Debug for BarrierWait<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierWait").finish_non_exhaustive()
    }
}
