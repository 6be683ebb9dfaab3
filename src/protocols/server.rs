//! Listening servers: `create_server` and asyncio's `Server` object.

use std::cell::RefCell;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use super::{Address, Protocol, Transport};

/// asyncio's accept retry delay after EMFILE and friends is 1 s; a shorter
/// pause keeps a test-sized server responsive.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

#[derive(Default)]
struct ServerState {
    serving: bool,
    /// Connections whose transport is not lost yet.
    active: usize,
    accept_task: Option<crate::Task<()>>,
    wakers: Vec<Waker>,
}

/// A listening server (asyncio's `Server`): accepting starts at creation
/// (`start_serving=True`). `close` stops accepting and closes the listening
/// socket; connections already accepted stay up. `wait_closed` waits until
/// the server is closed and every one of its connections is lost (Python
/// 3.12 semantics).
pub struct Server {
    addr: Address,
    state: Rc<RefCell<ServerState>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("serving", &self.is_serving())
            .finish()
    }
}

/// Why [`Server::serve_forever`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServeForeverError {
    /// The server was closed (asyncio: `serve_forever` is cancelled).
    Closed,
}

impl fmt::Display for ServeForeverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the server is closed")
    }
}

impl std::error::Error for ServeForeverError {}

impl Server {
    /// The listening address (`server.sockets[0].getsockname()`).
    pub fn address(&self) -> &Address {
        &self.addr
    }

    /// The listening IP address; `InvalidInput` for a Unix server.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.addr
            .as_inet()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP server"))
    }

    /// Whether the server accepts connections.
    pub fn is_serving(&self) -> bool {
        self.state.borrow().serving
    }

    /// Stops accepting and closes the listening socket (in the next loop
    /// iteration, when the accept task is dropped). Idempotent.
    pub fn close(&self) {
        let mut st = self.state.borrow_mut();
        st.serving = false;
        if let Some(t) = &st.accept_task {
            t.cancel();
        }
        for w in st.wakers.drain(..) {
            w.wake();
        }
    }

    /// Waits until the server is closed (its accept task finished, so the
    /// listening socket is dropped) and all its connections are lost.
    pub async fn wait_closed(&self) {
        poll_fn(|cx| {
            let mut st = self.state.borrow_mut();
            if !st.serving && st.active == 0 {
                Poll::Ready(())
            } else {
                st.wakers.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let accept = self.state.borrow_mut().accept_task.take();
        if let Some(task) = accept {
            // Cancelled by `close`: the result is `Err(Cancelled)`.
            let _ = task.await;
        }
    }

    /// Serves until [`close`](Self::close) (asyncio's `serve_forever`,
    /// which ends by cancellation: here it returns
    /// `Err(ServeForeverError::Closed)`). Dropping the future does not
    /// close the server.
    pub async fn serve_forever(&self) -> Result<(), ServeForeverError> {
        poll_fn(|cx| {
            let mut st = self.state.borrow_mut();
            if !st.serving {
                Poll::Ready(Err(ServeForeverError::Closed))
            } else {
                st.wakers.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Starts a server whose accept loop is `accept`, which calls `conn`
    /// for every connection.
    pub(crate) fn start<Fut>(addr: Address, accept: impl FnOnce(ConnTracker) -> Fut) -> io::Result<Server>
    where
        Fut: Future<Output = ()> + 'static,
    {
        let state = Rc::new(RefCell::new(ServerState {
            serving: true,
            ..ServerState::default()
        }));
        let task = crate::try_spawn(accept(ConnTracker(state.clone()))).map_err(io::Error::other)?;
        state.borrow_mut().accept_task = Some(task);
        Ok(Server { addr, state })
    }
}

/// Counts a server's live connections (for `wait_closed`).
#[derive(Clone)]
pub(crate) struct ConnTracker(Rc<RefCell<ServerState>>);

impl ConnTracker {
    /// Counts `t` until its `connection_lost`.
    pub(crate) fn track(&self, t: &Transport) {
        self.0.borrow_mut().active += 1;
        let state = self.0.clone();
        let t = t.clone();
        let watch = async move {
            t.wait_closed().await;
            let mut st = state.borrow_mut();
            st.active -= 1;
            for w in st.wakers.drain(..) {
                w.wake();
            }
        };
        if let Ok(task) = crate::try_spawn(watch) {
            task.detach();
        } else {
            self.0.borrow_mut().active -= 1;
        }
    }
}

/// Pauses after an accept error (EMFILE, ENFILE, ENOBUFS...): the error is
/// passed to the loop's exception handler, as asyncio logs it.
async fn accept_failed(e: io::Error) {
    if let Some(lp) = crate::runtime::current() {
        lp.call_exception_handler(crate::runtime::ExceptionContext {
            kind: crate::runtime::ExceptionKind::IoError,
            message: format!("socket.accept() out of system resource: {e}"),
            panic_message: None,
            task: None,
        });
    }
    crate::time::sleep(ACCEPT_RETRY_DELAY).await;
}

/// Listens on `addr` and gives every accepted connection a protocol made by
/// `factory` (asyncio's `loop.create_server(factory, host, port)`).
pub async fn create_server<P, F, A>(factory: F, addr: A) -> io::Result<Server>
where
    P: Protocol,
    F: Fn() -> P + 'static,
    A: ToSocketAddrs + Send + 'static,
{
    let addrs = crate::net::resolve(addr).await?;
    let mut last = None;
    let mut listener = None;
    for a in addrs {
        match crate::net::TcpListener::bind(a) {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let listener = match listener {
        Some(l) => l,
        None => return Err(last.unwrap_or_else(|| io::Error::other("no address to bind"))),
    };
    let local = listener.local_addr()?;
    Server::start(Address::Inet(local), move |tracker| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let protocol = Rc::new(RefCell::new(factory()));
                    if let Ok(t) = Transport::start(Rc::new(stream), protocol) {
                        tracker.track(&t);
                    }
                }
                Err(e) => accept_failed(e).await,
            }
        }
    })
}

/// [`create_server`] on a Unix socket path (`loop.create_unix_server`).
#[cfg(unix)]
pub async fn create_unix_server<P, F>(factory: F, path: impl AsRef<std::path::Path>) -> io::Result<Server>
where
    P: Protocol,
    F: Fn() -> P + 'static,
{
    let listener = crate::net::UnixListener::bind(path)?;
    let local = listener.local_addr()?;
    Server::start(Address::Unix(local), move |tracker| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let protocol = Rc::new(RefCell::new(factory()));
                    if let Ok(t) = Transport::start(Rc::new(stream), protocol) {
                        tracker.track(&t);
                    }
                }
                Err(e) => accept_failed(e).await,
            }
        }
    })
}
