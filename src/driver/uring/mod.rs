//! io_uring driver (being written; until then `new` reports Unsupported so
//! `Auto` selects the readiness backend).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::{Notify, UringConfig};

pub(crate) struct UringDriver {
    _private: (),
}

impl UringDriver {
    pub(crate) fn new(_cfg: &UringConfig) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring driver not built yet",
        ))
    }
    pub(crate) fn wait(&self, _timeout: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    pub(crate) fn setup_description(&self) -> String {
        String::new()
    }
    pub(crate) fn notifier(&self) -> Arc<dyn Notify> {
        unreachable!()
    }
}
