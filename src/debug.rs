//! Debug-level diagnostics, a leaf every layer may use (the driver reports
//! its setup and odd kernel answers here).

use std::fmt;

/// Prints `args` on stderr when `RINGLOOP_DEBUG` is set.
pub(crate) fn debug_log(args: fmt::Arguments<'_>) {
    if std::env::var_os("RINGLOOP_DEBUG").is_some() {
        eprintln!("{args}");
    }
}
