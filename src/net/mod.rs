//! Networking: TCP (more socket types come next), owned-buffer I/O on
//! io_uring or the readiness backend with one API.

mod tcp;

pub use tcp::{TcpListener, TcpStream};

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// Resolves `addr` on the blocking pool (getaddrinfo may block for seconds).
pub(crate) async fn resolve<A: ToSocketAddrs + Send + 'static>(addr: A) -> io::Result<Vec<SocketAddr>> {
    let lp = crate::runtime::current().ok_or_else(|| io::Error::other("ringloop: no event loop on this thread"))?;
    let job = lp.run_in_executor(move || addr.to_socket_addrs().map(|it| it.collect::<Vec<_>>()))?;
    let addrs = job
        .await
        .map_err(|e| io::Error::other(format!("address resolution failed: {e}")))??;
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        ));
    }
    Ok(addrs)
}
