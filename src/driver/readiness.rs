//! Adapter from the loop's driver contract to `ringloop-fallback`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ringloop_fallback::Reactor;

use super::Notify;

pub(crate) struct ReadinessDriver {
    reactor: Reactor,
    notifier: Arc<ringloop_fallback::Notifier>,
}

impl ReadinessDriver {
    pub(crate) fn new() -> io::Result<Self> {
        let reactor = Reactor::new()?;
        let notifier = Arc::new(reactor.notifier());
        Ok(ReadinessDriver { reactor, notifier })
    }

    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.reactor.wait(timeout).map(drop)
    }

    pub(crate) fn notifier(&self) -> Arc<dyn Notify> {
        self.notifier.clone()
    }

    #[allow(dead_code)]
    pub(crate) fn reactor(&self) -> &Reactor {
        &self.reactor
    }
}
