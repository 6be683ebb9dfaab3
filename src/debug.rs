//! Diagnostics, a leaf every layer may use: debug-level messages (the
//! driver reports its setup and odd kernel answers here), warnings about
//! the environment, and the wait-site note behind the task dump.
//!
//! Debug messages go to stderr when `RINGLOOP_DEBUG` is set, and warnings
//! always do. With the `tracing` feature, while a `tracing` subscriber is
//! installed (globally or for the thread), both are `tracing` events of
//! target `"ringloop"` instead (DEBUG and WARN), whatever `RINGLOOP_DEBUG`
//! says: the subscriber's filter decides. Without a subscriber they still
//! go to stderr, so turning the feature on never silences anything.

use std::cell::Cell;
use std::fmt;

/// Reports a debug-level diagnostic (see the module docs). Callers write
/// their message with a `"ringloop: "` prefix, which tracing events leave
/// out (their target says it).
pub(crate) fn debug_log(args: fmt::Arguments<'_>) {
    #[cfg(feature = "tracing")]
    if tracing_active() {
        if tracing::enabled!(target: "ringloop", tracing::Level::DEBUG) {
            let text = args.to_string();
            let msg = text.strip_prefix("ringloop: ").unwrap_or(&text);
            tracing::debug!(target: "ringloop", "{msg}");
        }
        return;
    }
    if std::env::var_os("RINGLOOP_DEBUG").is_some() {
        eprintln!("{args}");
    }
}

/// Reports a warning about the process's configuration (an unknown
/// environment value, say): stderr, or a WARN event (see the module docs).
pub(crate) fn warn_log(args: fmt::Arguments<'_>) {
    #[cfg(feature = "tracing")]
    if tracing_active() {
        let text = args.to_string();
        let msg = text.strip_prefix("ringloop: ").unwrap_or(&text);
        tracing::warn!(target: "ringloop", "{msg}");
        return;
    }
    eprintln!("{args}");
}

/// Whether a `tracing` subscriber is installed for this thread (its own
/// scoped default, else the global one): diagnostics are then `tracing`
/// events; without one they go to stderr as without the feature.
#[cfg(feature = "tracing")]
pub(crate) fn tracing_active() -> bool {
    tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>())
}

/// A wait site's label, as a function so that it is one thin pointer (a
/// task stores the last one; `std::any::type_name::<T>` fits, and so does a
/// non-capturing closure `|| "sleep"`).
pub(crate) type WaitSite = fn() -> &'static str;

thread_local! {
    /// What the innermost ringloop future that returned `Pending` during
    /// the running task step waits for (see [`note_wait`]).
    static WAIT_SITE: Cell<Option<WaitSite>> = const { Cell::new(None) };
}

/// Called by a ringloop future when it returns `Pending` (a sleep, an I/O
/// operation, a task join, ...): the task whose step runs remembers `what`
/// as the place it waits (the task dump shows it). The last note of a step
/// wins. One thread-local store: cheap enough for every pending poll.
#[inline]
pub(crate) fn note_wait(what: WaitSite) {
    let _ = WAIT_SITE.try_with(|w| w.set(Some(what)));
}

/// Clears the wait-site note and returns the previous one (the task step
/// calls it before polling, to clear, and after a pending poll, to keep it).
#[inline]
pub(crate) fn take_wait() -> Option<WaitSite> {
    WAIT_SITE.try_with(|w| w.take()).ok().flatten()
}
