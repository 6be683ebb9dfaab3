//! `gather` and `wait`, with asyncio's semantics.
//!
//! A gather is itself a task (`Task<Vec<T>>`): cancel it and every unfinished
//! child is cancelled; pass it to another gather and the groups nest. The
//! first child error (in completion order) becomes the gather's error while
//! the other children keep running, as in asyncio.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::runtime::{self, LoopError};
use crate::task::{self, Task, TaskError};
use crate::time::Sleep;

mod as_completed;
mod shield;
mod task_group;

pub use as_completed::{AsCompleted, AsCompletedTimeout, as_completed};
pub use shield::{Shield, shield};
pub use task_group::{ChildError, GroupSpawnError, TaskGroup, TaskGroupError, TaskGroupJoin, task_group};

#[track_caller]
fn spawn_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<Task<F::Output>>
where
    F: Future + 'static,
    F::Output: 'static,
{
    // The children's spawn location (task dump) is the gather's caller.
    let at = std::panic::Location::caller();
    futs.into_iter()
        .map(|f| match crate::runtime::try_spawn_at(f, at) {
            Ok(t) => t,
            Err(e) => panic!("ringloop::spawn: {e}"),
        })
        .collect()
}

/// How a gather turns a child's outcome into its own result element.
trait Mode<T>: 'static {
    type Out: 'static;
    /// `Err` makes the whole gather fail (first error wins).
    fn accept(r: Result<T, TaskError>) -> Result<Self::Out, TaskError>;
}

struct Plain;
impl<T: 'static> Mode<T> for Plain {
    type Out = T;
    fn accept(r: Result<T, TaskError>) -> Result<T, TaskError> {
        r
    }
}

struct Settled;
impl<T: 'static> Mode<T> for Settled {
    type Out = Result<T, TaskError>;
    fn accept(r: Result<T, TaskError>) -> Result<Self::Out, TaskError> {
        Ok(r)
    }
}

#[track_caller]
fn gather_task<T: 'static, M: Mode<T>>(children: Vec<Task<T>>) -> Task<Vec<M::Out>> {
    let lp = match runtime::current_inner().ok_or(LoopError::NoLoop) {
        Ok(lp) => lp,
        Err(e) => panic!("ringloop::gather: {e}"),
    };
    if let Err(e) = lp.check_open() {
        panic!("ringloop::gather: {e}");
    }
    let n = children.len();
    let refs: Vec<_> = children.iter().map(|c| c.as_ref()).collect();
    let body = GatherBody::<T, M> {
        children: children.into_iter().map(Some).collect(),
        results: (0..n).map(|_| None).collect(),
        pending: n,
        registered: false,
        finished: false,
        _mode: PhantomData,
    };
    let gather = runtime::spawn_raw(&lp, body);
    gather.mark_gather();
    // Cancelling the gather cancels its children at once, as asyncio does,
    // so a child cancelled before its first step never runs.
    gather.link_children(refs);
    gather
}

/// Runs the futures concurrently (each as a task) and resolves to their
/// outputs in argument order. The returned task fails with the first child
/// error in completion order (the others keep running); cancelling it
/// cancels every unfinished child (when none is left, `cancel()` returns
/// `false` and the gather keeps its result). An empty input gives `Ok(vec![])`.
///
/// # Panics
///
/// Without an open loop on this thread (like [`spawn`](crate::spawn)).
#[track_caller]
pub fn gather<F>(futs: impl IntoIterator<Item = F>) -> Task<Vec<F::Output>>
where
    F: Future + 'static,
    F::Output: 'static,
{
    gather_tasks(spawn_all(futs))
}

/// [`gather`] over already-spawned tasks (including other gathers: groups).
///
/// # Panics
///
/// Without an open loop on this thread.
#[track_caller]
pub fn gather_tasks<T: 'static>(tasks: impl IntoIterator<Item = Task<T>>) -> Task<Vec<T>> {
    gather_task::<T, Plain>(tasks.into_iter().collect())
}

/// Like [`gather`] but never fails because of a child: every outcome comes
/// back in place (asyncio's `return_exceptions=True`). Cancelling the
/// returned task still cancels the children and makes it fail with
/// `TaskError::Cancelled`.
///
/// # Panics
///
/// Without an open loop on this thread.
#[track_caller]
pub fn gather_settled<F>(futs: impl IntoIterator<Item = F>) -> Task<Vec<Result<F::Output, TaskError>>>
where
    F: Future + 'static,
    F::Output: 'static,
{
    gather_tasks_settled(spawn_all(futs))
}

/// [`gather_settled`] over already-spawned tasks.
///
/// # Panics
///
/// Without an open loop on this thread.
#[track_caller]
pub fn gather_tasks_settled<T: 'static>(tasks: impl IntoIterator<Item = Task<T>>) -> Task<Vec<Result<T, TaskError>>> {
    gather_task::<T, Settled>(tasks.into_iter().collect())
}

struct GatherBody<T: 'static, M: Mode<T>> {
    children: Vec<Option<Task<T>>>,
    results: Vec<Option<M::Out>>,
    pending: usize,
    registered: bool,
    finished: bool,
    _mode: PhantomData<M>,
}

impl<T: 'static, M: Mode<T>> Unpin for GatherBody<T, M> {}

impl<T: 'static, M: Mode<T>> Future for GatherBody<T, M> {
    type Output = Result<Vec<M::Out>, TaskError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let first = !this.registered;
        for i in 0..this.children.len() {
            match &this.children[i] {
                Some(child) if child.is_done() => {}
                // A child of another loop could never finish here.
                Some(child) if first && child.is_foreign_and_pending() => {}
                _ => continue,
            }
            let Some(child) = this.children[i].take() else { continue };
            let r = if child.is_done() {
                child.take_result().unwrap_or(Err(TaskError::AlreadyRetrieved))
            } else {
                Err(TaskError::ForeignLoop)
            };
            this.pending -= 1;
            match M::accept(r) {
                Ok(v) => this.results[i] = Some(v),
                Err(e) => {
                    // First error wins; the other children keep running.
                    this.finished = true;
                    for c in this.children.iter_mut() {
                        if let Some(c) = c.take() {
                            c.detach();
                        }
                    }
                    return Poll::Ready(Err(e));
                }
            }
        }
        if this.pending == 0 {
            this.finished = true;
            let out = this.results.iter_mut().filter_map(Option::take).collect();
            return Poll::Ready(Ok(out));
        }
        if first {
            this.registered = true;
            for c in this.children.iter().flatten() {
                c.add_listener(cx.waker());
            }
        }
        crate::debug::note_wait(|| "gather");
        Poll::Pending
    }
}

impl<T: 'static, M: Mode<T>> Drop for GatherBody<T, M> {
    fn drop(&mut self) {
        if !self.finished {
            // The gather was cancelled: cancel every unfinished child.
            for c in self.children.iter().flatten() {
                c.cancel();
            }
        }
    }
}

/// Heterogeneous gather of up to 8 futures: spawns each as a task and
/// resolves to `Result<(A, B, ..), TaskError>` with the outputs in argument
/// order. The first error (in completion order) is returned at once and the
/// other tasks keep running; dropping the future before it finishes cancels
/// the unfinished tasks.
///
/// ```
/// # let lp = ringloop::EventLoop::new().unwrap();
/// # lp.run_until_complete(async {
/// let (a, b) = ringloop::gather!(async { 1 }, async { "two" }).await.unwrap();
/// assert_eq!((a, b), (1, "two"));
/// # }).unwrap();
/// ```
#[macro_export]
macro_rules! gather {
    ($($f:expr),+ $(,)?) => {
        $crate::combinators::JoinTuple::join(( $( $crate::spawn($f), )+ ))
    };
}

/// Tuples of tasks that [`gather!`](crate::gather!) can join.
pub trait JoinTuple {
    /// The tuple of outputs.
    type Output;
    /// Joins every task; see [`gather!`](crate::gather!).
    fn join(self) -> impl Future<Output = Result<Self::Output, TaskError>>;
}

struct CancelGuard(Vec<task::TaskRef>, bool);
impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.1 {
            for t in &self.0 {
                t.cancel();
            }
        }
    }
}

macro_rules! impl_join_tuple {
    ($($T:ident $t:ident $o:ident),+) => {
        impl<$($T: 'static),+> JoinTuple for ($(Task<$T>,)+) {
            type Output = ($($T,)+);
            #[allow(non_snake_case)]
            async fn join(self) -> Result<Self::Output, TaskError> {
                let ($(mut $t,)+) = self;
                let mut guard = CancelGuard(vec![$($t.as_ref()),+], true);
                $( let mut $o: Option<$T> = None; )+
                let r = std::future::poll_fn(|cx| {
                    $(
                        if $o.is_none() {
                            match Pin::new(&mut $t).poll(cx) {
                                Poll::Ready(Ok(v)) => $o = Some(v),
                                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                                Poll::Pending => {}
                            }
                        }
                    )+
                    if true $(&& $o.is_some())+ {
                        Poll::Ready(Ok(($($o.take().expect("checked"),)+)))
                    } else {
                        Poll::Pending
                    }
                })
                .await;
                // Finished (or failed): the remaining tasks keep running.
                guard.1 = false;
                r
            }
        }
    };
}

impl_join_tuple!(A a oa);
impl_join_tuple!(A a oa, B b ob);
impl_join_tuple!(A a oa, B b ob, C c oc);
impl_join_tuple!(A a oa, B b ob, C c oc, D d od);
impl_join_tuple!(A a oa, B b ob, C c oc, D d od, E e oe);
impl_join_tuple!(A a oa, B b ob, C c oc, D d od, E e oe, F f of);
impl_join_tuple!(A a oa, B b ob, C c oc, D d od, E e oe, F f of, G g og);
impl_join_tuple!(A a oa, B b ob, C c oc, D d od, E e oe, F f of, G g og, H h oh);

/// When [`wait`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReturnWhen {
    /// As soon as any task finishes.
    FirstCompleted,
    /// As soon as any task panics (cancellations do not count), else when
    /// all are done.
    FirstException,
    /// When every task is done.
    #[default]
    AllCompleted,
}

/// Errors of [`wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitError {
    /// `wait` was given no tasks (asyncio: `ValueError`).
    Empty,
    /// A task belongs to another event loop than the one running `wait`
    /// (asyncio: `ValueError`); it could never finish while this loop runs.
    ForeignLoop,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitError::Empty => "Set of Tasks/Futures is empty.",
            WaitError::ForeignLoop => "a task belongs to a different event loop",
        })
    }
}
impl std::error::Error for WaitError {}

/// Waits for tasks per `return_when` and resolves to `(done, pending)`, each
/// in input order. Never cancels anything; with [`Wait::timeout`], returns
/// what is done when the timeout expires (never an error for the timeout).
pub fn wait<T: 'static>(tasks: impl IntoIterator<Item = Task<T>>, return_when: ReturnWhen) -> Wait<T> {
    Wait {
        tasks: tasks.into_iter().collect(),
        return_when,
        timeout: None,
        sleep: None,
        registered: false,
    }
}

/// Future returned by [`wait`].
pub struct Wait<T: 'static> {
    tasks: Vec<Task<T>>,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
    sleep: Option<Sleep>,
    registered: bool,
}

impl<T: 'static> Wait<T> {
    /// Returns at the latest after `d`, with whatever is done by then.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
}

impl<T: 'static> Unpin for Wait<T> {}

/// `(done, pending)` as returned by [`wait`].
pub type DonePending<T> = (Vec<Task<T>>, Vec<Task<T>>);

impl<T: 'static> Future for Wait<T> {
    type Output = Result<DonePending<T>, WaitError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.tasks.is_empty() {
            return Poll::Ready(Err(WaitError::Empty));
        }
        if !this.registered && this.tasks.iter().any(|t| t.is_foreign_and_pending()) {
            return Poll::Ready(Err(WaitError::ForeignLoop));
        }
        let done_count = this.tasks.iter().filter(|t| t.is_done()).count();
        let finished = match this.return_when {
            ReturnWhen::AllCompleted => done_count == this.tasks.len(),
            ReturnWhen::FirstCompleted => done_count > 0,
            ReturnWhen::FirstException => {
                done_count == this.tasks.len() || this.tasks.iter().any(|t| t.is_done() && t.has_panicked())
            }
        };
        let expired = match (this.timeout, &mut this.sleep) {
            (None, _) => false,
            (Some(d), s) => Pin::new(s.get_or_insert_with(|| crate::time::sleep(d.max(Duration::from_nanos(1)))))
                .poll(cx)
                .is_ready(),
        };
        if finished || expired {
            let (done, pending) = std::mem::take(&mut this.tasks).into_iter().partition(|t| t.is_done());
            return Poll::Ready(Ok((done, pending)));
        }
        if !this.registered {
            this.registered = true;
            for t in &this.tasks {
                t.add_listener(cx.waker());
            }
        }
        Poll::Pending
    }
}
