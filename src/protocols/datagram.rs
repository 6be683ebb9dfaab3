//! Datagram endpoints: `create_datagram_endpoint` with a `DatagramProtocol`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::{Address, ExtraInfo, TransportError};
use crate::net::UdpSocket;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65536;

/// The callbacks of a datagram endpoint (asyncio's `DatagramProtocol`).
pub trait DatagramProtocol: 'static {
    /// The endpoint is ready; keep a clone of `transport` to send later.
    fn connection_made(&mut self, transport: &DatagramTransport) {
        let _ = transport;
    }
    /// A datagram arrived from `addr`.
    fn datagram_received(&mut self, data: &[u8], addr: SocketAddr) {
        let _ = (data, addr);
    }
    /// A send or receive failed (e.g. ECONNREFUSED from an ICMP error);
    /// the endpoint stays open.
    fn error_received(&mut self, err: io::Error) {
        let _ = err;
    }
    /// The endpoint is closed.
    fn connection_lost(&mut self, err: Option<io::Error>) {
        let _ = err;
    }
}

#[derive(Default)]
struct DState {
    queue: VecDeque<(Vec<u8>, Option<SocketAddr>)>,
    queued_bytes: usize,
    closing: bool,
    aborted: bool,
    lost: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    closed: Vec<Waker>,
}

struct DShared {
    protocol: RefCell<Option<Rc<RefCell<dyn DatagramProtocol>>>>,
    state: RefCell<DState>,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
}

/// The handle of a datagram endpoint (asyncio's `DatagramTransport`).
#[derive(Clone)]
pub struct DatagramTransport {
    shared: Rc<DShared>,
}

impl fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("local", &self.shared.local)
            .field("peer", &self.shared.peer)
            .finish()
    }
}

impl DatagramTransport {
    /// Queues one datagram to `addr` (`None`: the connected peer). Never
    /// blocks; a failed send goes to `error_received`.
    pub fn sendto(&self, data: &[u8], addr: Option<SocketAddr>) -> Result<(), TransportError> {
        let mut st = self.shared.state.borrow_mut();
        if st.closing || st.lost {
            return Err(TransportError::Closed);
        }
        st.queued_bytes += data.len();
        st.queue.push_back((data.to_vec(), addr));
        if let Some(w) = st.writer.take() {
            w.wake();
        }
        Ok(())
    }

    /// Bytes queued and not yet sent.
    pub fn get_write_buffer_size(&self) -> usize {
        self.shared.state.borrow().queued_bytes
    }

    /// Stops receiving, sends what is queued, then `connection_lost(None)`.
    pub fn close(&self) {
        let mut st = self.shared.state.borrow_mut();
        st.closing = true;
        wake(&mut st);
    }

    /// Closes at once, dropping queued datagrams.
    pub fn abort(&self) {
        let mut st = self.shared.state.borrow_mut();
        st.closing = true;
        st.aborted = true;
        st.queue.clear();
        st.queued_bytes = 0;
        wake(&mut st);
    }

    /// Whether `close`/`abort` was called.
    pub fn is_closing(&self) -> bool {
        self.shared.state.borrow().closing
    }

    /// Waits until `connection_lost` has been called.
    pub async fn wait_closed(&self) {
        poll_fn(|cx| {
            let mut st = self.shared.state.borrow_mut();
            if st.lost {
                Poll::Ready(())
            } else {
                st.closed.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// `"sockname"`, `"peername"` (connected endpoints); else `None`.
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        let a = match name {
            "sockname" => self.shared.local,
            "peername" => self.shared.peer,
            _ => None,
        };
        a.map(|a| ExtraInfo::Address(Address::Inet(a)))
    }

    async fn call(&self, f: impl FnOnce(&mut dyn DatagramProtocol)) {
        let Some(p) = self.shared.protocol.borrow().clone() else {
            return;
        };
        loop {
            if let Ok(mut p) = p.try_borrow_mut() {
                return f(&mut *p);
            }
            crate::time::yield_now().await;
        }
    }
}

fn wake(st: &mut DState) {
    if let Some(w) = st.reader.take() {
        w.wake();
    }
    if let Some(w) = st.writer.take() {
        w.wake();
    }
}

/// Binds a UDP socket to `local_addr` (an ephemeral port on the unspecified
/// address of `remote_addr`'s family when `None`), connects it to
/// `remote_addr` if given, makes a protocol with `factory` and starts
/// receiving (asyncio's `loop.create_datagram_endpoint`).
pub async fn create_datagram_endpoint<P, F>(
    factory: F,
    local_addr: Option<SocketAddr>,
    remote_addr: Option<SocketAddr>,
) -> io::Result<(DatagramTransport, Rc<RefCell<P>>)>
where
    P: DatagramProtocol,
    F: FnOnce() -> P,
{
    let bind = match (local_addr, remote_addr) {
        (Some(l), _) => l,
        (None, Some(SocketAddr::V6(_))) => "[::]:0".parse().map_err(io::Error::other)?,
        (None, _) => "0.0.0.0:0".parse().map_err(io::Error::other)?,
    };
    let sock = UdpSocket::bind(bind)?;
    if let Some(r) = remote_addr {
        sock.connect(r).await?;
    }
    let protocol = Rc::new(RefCell::new(factory()));
    let dynp: Rc<RefCell<dyn DatagramProtocol>> = protocol.clone();
    let t = DatagramTransport {
        shared: Rc::new(DShared {
            protocol: RefCell::new(Some(dynp)),
            state: RefCell::new(DState::default()),
            local: sock.local_addr().ok(),
            peer: remote_addr,
        }),
    };
    protocol
        .try_borrow_mut()
        .map_err(|_| io::Error::other("the protocol is borrowed during connection_made"))?
        .connection_made(&t);
    let sock = Rc::new(sock);
    crate::try_spawn(receiver(t.clone(), sock.clone()))
        .map_err(io::Error::other)?
        .detach();
    crate::try_spawn(sender(t.clone(), sock))
        .map_err(io::Error::other)?
        .detach();
    Ok((t, protocol))
}

async fn receiver(t: DatagramTransport, sock: Rc<UdpSocket>) {
    let mut buf = Vec::with_capacity(MAX_DATAGRAM);
    loop {
        buf.clear();
        let mut fut = std::pin::pin!(sock.recv_from(buf));
        let got = poll_fn(|cx| {
            {
                let mut st = t.shared.state.borrow_mut();
                if st.closing {
                    return Poll::Ready(None);
                }
                st.reader = Some(cx.waker().clone());
            }
            fut.as_mut().poll(cx).map(Some)
        })
        .await;
        let Some((res, b)) = got else { return };
        buf = b;
        match res {
            Ok((n, from)) => t.call(|p| p.datagram_received(&buf[..n], from)).await,
            Err(e) => t.call(|p| p.error_received(e)).await,
        }
    }
}

async fn sender(t: DatagramTransport, sock: Rc<UdpSocket>) {
    loop {
        let next = poll_fn(|cx| {
            let mut st = t.shared.state.borrow_mut();
            if st.aborted {
                return Poll::Ready(None);
            }
            if let Some(d) = st.queue.pop_front() {
                return Poll::Ready(Some(d));
            }
            if st.closing {
                return Poll::Ready(None);
            }
            st.writer = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        let Some((data, addr)) = next else { break };
        let len = data.len();
        let (res, _) = match addr {
            Some(a) => sock.send_to(data, a).await,
            None => sock.send(data).await,
        };
        {
            let mut st = t.shared.state.borrow_mut();
            st.queued_bytes = st.queued_bytes.saturating_sub(len);
        }
        if let Err(e) = res {
            t.call(|p| p.error_received(e)).await;
        }
    }
    drop(sock);
    t.call(|p| p.connection_lost(None)).await;
    t.shared.protocol.borrow_mut().take();
    let wakers = {
        let mut st = t.shared.state.borrow_mut();
        st.lost = true;
        wake(&mut st);
        std::mem::take(&mut st.closed)
    };
    for w in wakers {
        w.wake();
    }
}
