//! Diagnostics, a leaf every layer may use: debug-level messages (the
//! driver reports its setup and odd kernel answers here), warnings about
//! the environment, and the wait-site note behind the task dump.
//!
//! Without the `tracing` feature, debug messages go to stderr when
//! `RINGLOOP_DEBUG` is set and warnings always do. With it, both are
//! `tracing` events of target `"ringloop"` (DEBUG and WARN), whatever
//! `RINGLOOP_DEBUG` says: the subscriber's filter decides.

use std::cell::Cell;
use std::fmt;

/// Reports a debug-level diagnostic (see the module docs). Callers write
/// their message with a `"ringloop: "` prefix, which tracing events leave
/// out (their target says it).
pub(crate) fn debug_log(args: fmt::Arguments<'_>) {
    #[cfg(feature = "tracing")]
    {
        if tracing::enabled!(target: "ringloop", tracing::Level::DEBUG) {
            let text = args.to_string();
            let msg = text.strip_prefix("ringloop: ").unwrap_or(&text);
            tracing::debug!(target: "ringloop", "{msg}");
        }
    }
    #[cfg(not(feature = "tracing"))]
    {
        if std::env::var_os("RINGLOOP_DEBUG").is_some() {
            eprintln!("{args}");
        }
    }
}

/// Reports a warning about the process's configuration (an unknown
/// environment value, say): stderr, or a WARN event with `tracing`.
pub(crate) fn warn_log(args: fmt::Arguments<'_>) {
    #[cfg(feature = "tracing")]
    {
        let text = args.to_string();
        let msg = text.strip_prefix("ringloop: ").unwrap_or(&text);
        tracing::warn!(target: "ringloop", "{msg}");
    }
    #[cfg(not(feature = "tracing"))]
    eprintln!("{args}");
}

thread_local! {
    /// What the innermost ringloop future that returned `Pending` during
    /// the running task step waits for (see [`note_wait`]).
    static WAIT_SITE: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Called by a ringloop future when it returns `Pending` (a sleep, an I/O
/// operation, a task join, ...): the task whose step runs remembers `what`
/// as the place it waits (the task dump shows it). The last note of a step
/// wins. One thread-local store: cheap enough for every pending poll.
#[inline]
pub(crate) fn note_wait(what: &'static str) {
    let _ = WAIT_SITE.try_with(|w| w.set(Some(what)));
}

/// Clears the wait-site note and returns the previous one (the task step
/// calls it before polling, to clear, and after a pending poll, to keep it).
#[inline]
pub(crate) fn take_wait() -> Option<&'static str> {
    WAIT_SITE.try_with(|w| w.take()).ok().flatten()
}
