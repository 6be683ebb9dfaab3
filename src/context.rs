//! Task-local context variables: asyncio's `contextvars`.
//!
//! Every task has a context (a map from [`ContextVar`] to value). A spawned
//! task starts with a **copy** of its spawner's context, so values set in
//! the parent before the spawn are visible in the child, and values the
//! child sets are not seen by the parent (or by siblings). Blocking jobs
//! (`run_in_executor` / `spawn_blocking`) run in a copy of the caller's
//! context, as asyncio's `to_thread` does; callbacks scheduled with
//! `call_soon` / `call_later` / `call_at` and [`LoopFuture`](crate::LoopFuture)
//! done callbacks run in the context current when they were scheduled.
//! Outside any task (before the loop runs, in a callback scheduled from
//! outside a task) the thread's own context is current.
//!
//! The copy is cheap: a context is an immutable, reference-counted map that
//! is copied only when a task sets a variable while sharing it. Until some
//! `ContextVar::set` runs in the process, spawning and running tasks does no
//! context work at all beyond one relaxed atomic load.
//!
//! ```
//! use ringloop::context::ContextVar;
//!
//! static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
//!
//! ringloop::run(async {
//!     REQUEST_ID.set(7);
//!     let child = ringloop::spawn(async {
//!         let inherited = REQUEST_ID.get();
//!         REQUEST_ID.set(8); // only in the child's copy
//!         inherited
//!     });
//!     assert_eq!(child.await.unwrap(), Some(7));
//!     assert_eq!(REQUEST_ID.get(), Some(7));
//!     let seen = ringloop::spawn_blocking(|| REQUEST_ID.get()).await.unwrap();
//!     assert_eq!(seen, Some(7));
//! })
//! .unwrap();
//! ```

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

type Value = Arc<dyn Any + Send + Sync>;

/// The variables set in one context, by variable id. Small: a linear scan.
#[derive(Clone, Default)]
pub(crate) struct Map {
    entries: Vec<(u64, Value)>,
}

impl Map {
    fn get(&self, id: u64) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| *k == id).map(|(_, v)| v)
    }
    fn set(&mut self, id: u64, v: Option<Value>) -> Option<Value> {
        let pos = self.entries.iter().position(|(k, _)| *k == id);
        match (pos, v) {
            (Some(i), Some(v)) => Some(std::mem::replace(&mut self.entries[i].1, v)),
            (Some(i), None) => Some(self.entries.remove(i).1),
            (None, Some(v)) => {
                self.entries.push((id, v));
                None
            }
            (None, None) => None,
        }
    }
}

/// A context as stored in a task: `None` is the empty context.
pub(crate) type Ctx = Option<Arc<Map>>;

/// Set once any variable was ever set: until then there is nothing to copy
/// or switch, and the hooks in spawn / task steps are a single load.
static IN_USE: AtomicBool = AtomicBool::new(false);

thread_local! {
    static CURRENT: RefCell<Ctx> = const { RefCell::new(None) };
}

#[inline]
pub(crate) fn in_use() -> bool {
    IN_USE.load(Ordering::Relaxed)
}

/// A copy of the current context (for a new task); `None` when empty.
#[inline]
pub(crate) fn capture() -> Ctx {
    if !in_use() {
        return None;
    }
    CURRENT.try_with(|c| c.borrow().clone()).unwrap_or(None)
}

/// Makes `ctx` current and returns the previous one.
pub(crate) fn enter(ctx: Ctx) -> Ctx {
    CURRENT.try_with(|c| c.replace(ctx)).unwrap_or(None)
}

/// Runs `f` in `ctx`, then restores the previous context; returns `f`'s
/// output and the context as `f` left it.
fn run_in<R>(ctx: Ctx, f: impl FnOnce() -> R) -> (R, Ctx) {
    struct Restore(Option<Ctx>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(prev) = self.0.take() {
                enter(prev);
            }
        }
    }
    let mut guard = Restore(Some(enter(ctx)));
    let out = f();
    let prev = guard.0.take().unwrap_or(None);
    let left = enter(prev);
    (out, left)
}

/// The context to run a callback in later: `None` (run it as is) until
/// context variables are in use.
pub(crate) fn snapshot() -> Option<Ctx> {
    if in_use() { Some(capture()) } else { None }
}

/// Runs `f` in a [`snapshot`].
pub(crate) fn run_snapshot<R>(snap: Option<Ctx>, f: impl FnOnce() -> R) -> R {
    match snap {
        Some(ctx) => run_in(ctx, f).0,
        None => f(),
    }
}

/// Wraps `f` to run in the context current now (nothing to do, and no
/// allocation, until context variables are in use).
pub(crate) fn bind(f: Box<dyn FnOnce()>) -> Box<dyn FnOnce()> {
    match snapshot() {
        None => f,
        snap => Box::new(move || run_snapshot(snap, f)),
    }
}

/// Like [`bind`] for a `Send` job (blocking pool).
pub(crate) fn bind_send<R>(f: impl FnOnce() -> R + Send + 'static) -> impl FnOnce() -> R + Send + 'static {
    let snap = snapshot();
    move || run_snapshot(snap, f)
}

static NEXT_VAR_ID: AtomicU64 = AtomicU64::new(1);

/// A task-local variable (asyncio's `contextvars.ContextVar`); usually a
/// `static`. See the [module docs](self) for how values flow between tasks.
///
/// Values are stored as `Arc<T>` and must be `Send + Sync` (they are copied
/// into blocking jobs, which run on other threads).
pub struct ContextVar<T> {
    name: &'static str,
    id: AtomicU64,
    _value: PhantomData<fn() -> T>,
}

/// Returned by [`ContextVar::set`]; give it to [`ContextVar::reset`] to
/// restore the value the variable had before that `set` (asyncio's `Token`).
pub struct ContextToken<T> {
    var_id: u64,
    old: Option<Value>,
    _value: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for ContextToken<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextToken")
            .field("had_value", &self.old.is_some())
            .finish()
    }
}

/// [`ContextVar::reset`] was given a token of another variable (asyncio
/// raises `ValueError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForeignToken;

impl fmt::Display for ForeignToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("token was created by a different ContextVar")
    }
}

impl std::error::Error for ForeignToken {}

impl<T: Send + Sync + 'static> ContextVar<T> {
    /// A variable with no value in any context yet.
    pub const fn new(name: &'static str) -> Self {
        ContextVar {
            name,
            id: AtomicU64::new(0),
            _value: PhantomData,
        }
    }

    /// The name given to [`new`](Self::new).
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn id(&self) -> u64 {
        let id = self.id.load(Ordering::Acquire);
        if id != 0 {
            return id;
        }
        let fresh = NEXT_VAR_ID.fetch_add(1, Ordering::Relaxed);
        match self.id.compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            Err(winner) => winner,
        }
    }

    /// Calls `f` with the value in the current context (`None` if unset).
    pub fn with<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        if !in_use() {
            return f(None);
        }
        let id = self.id();
        let value = CURRENT
            .try_with(|c| c.borrow().as_ref().and_then(|m| m.get(id).cloned()))
            .unwrap_or(None);
        f(value.as_deref().and_then(|v| v.downcast_ref::<T>()))
    }

    /// A clone of the value in the current context (`None` if unset).
    pub fn get(&self) -> Option<T>
    where
        T: Clone,
    {
        self.with(|v| v.cloned())
    }

    /// The value in the current context, or `default` if unset.
    pub fn get_or(&self, default: T) -> T
    where
        T: Clone,
    {
        self.get().unwrap_or(default)
    }

    /// Sets the value in the current context (the running task's own copy,
    /// or the thread's context outside tasks).
    pub fn set(&self, value: T) -> ContextToken<T> {
        IN_USE.store(true, Ordering::Relaxed);
        let id = self.id();
        let old = self.replace(id, Some(Arc::new(value)));
        ContextToken {
            var_id: id,
            old,
            _value: PhantomData,
        }
    }

    /// Restores the value the variable had before the `set` that returned
    /// `token` (removing it if it had none).
    pub fn reset(&self, token: ContextToken<T>) -> Result<(), ForeignToken> {
        if token.var_id != self.id() {
            return Err(ForeignToken);
        }
        drop(self.replace(token.var_id, token.old));
        Ok(())
    }

    fn replace(&self, id: u64, value: Option<Value>) -> Option<Value> {
        let old = CURRENT.try_with(|c| {
            let mut cur = c.borrow_mut();
            let map = Arc::make_mut(cur.get_or_insert_with(Default::default));
            map.set(id, value)
        });
        old.unwrap_or(None)
    }
}

impl<T> fmt::Debug for ContextVar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextVar").field("name", &self.name).finish()
    }
}

/// A snapshot of a context (asyncio's `contextvars.Context`), to run code
/// in it later with [`Context::run`].
#[derive(Clone, Default)]
pub struct Context {
    map: Ctx,
}

impl Context {
    /// A copy of the current context (asyncio's `copy_context()`).
    pub fn current() -> Context {
        Context { map: capture() }
    }

    /// An empty context.
    pub fn new() -> Context {
        Context::default()
    }

    /// Runs `f` with this context current; what `f` sets stays in this
    /// context (not in the caller's).
    pub fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let (out, left) = run_in(self.map.take(), f);
        self.map = left;
        out
    }

    /// The value of `var` in this context.
    pub fn get<T: Clone + Send + Sync + 'static>(&self, var: &ContextVar<T>) -> Option<T> {
        let v = self.map.as_ref()?.get(var.id())?;
        v.downcast_ref::<T>().cloned()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.map.as_ref().map_or(0, |m| m.entries.len());
        f.debug_struct("Context").field("vars", &n).finish()
    }
}
