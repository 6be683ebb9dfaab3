//! Adapter from the loop's driver contract to `ringloop-fallback`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ringloop_fallback::Reactor;

use super::Notify;

pub(crate) struct ReadinessDriver {
    closed: std::cell::Cell<bool>,
    reactor: Reactor,
    notifier: Arc<ringloop_fallback::Notifier>,
}

impl ReadinessDriver {
    pub(crate) fn new() -> io::Result<Self> {
        let reactor = Reactor::new()?;
        let notifier = Arc::new(reactor.notifier());
        Ok(ReadinessDriver {
            closed: std::cell::Cell::new(false),
            reactor,
            notifier,
        })
    }

    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        // A zero-timeout poll with no registered source cannot find anything
        // (cross-thread work is seen through the loop's own queue): skip
        // its syscall(s).
        if timeout == Some(Duration::ZERO) && self.reactor.registered() == 0 {
            return Ok(());
        }
        self.reactor.wait(timeout).map(drop)
    }

    /// Marks the driver closed (its loop was closed): waiting for readiness
    /// then fails at once instead of hanging.
    pub(crate) fn close(&self) {
        self.closed.set(true);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    pub(crate) fn notifier(&self) -> Arc<dyn Notify> {
        self.notifier.clone()
    }

    #[allow(dead_code)]
    pub(crate) fn reactor(&self) -> &Reactor {
        &self.reactor
    }
}
