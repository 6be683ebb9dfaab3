//! The event loop.

/// Debug-level diagnostics (printed when `RINGLOOP_DEBUG` is set).
pub(crate) fn debug_log(args: std::fmt::Arguments<'_>) {
    if std::env::var_os("RINGLOOP_DEBUG").is_some() {
        eprintln!("{args}");
    }
}
