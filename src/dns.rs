//! asyncio's `loop.getaddrinfo` / `loop.getnameinfo`: the blocking
//! resolver calls, run on the blocking pool so the loop keeps running.
//!
//! ```
//! ringloop::run(async {
//!     let addrs = ringloop::dns::getaddrinfo("127.0.0.1", 80).await.unwrap();
//!     assert_eq!(addrs, ["127.0.0.1:80".parse().unwrap()]);
//!     let flags = ringloop::dns::NI_NUMERICHOST | ringloop::dns::NI_NUMERICSERV;
//!     let (host, port) = ringloop::dns::getnameinfo(addrs[0], flags).await.unwrap();
//!     assert_eq!((host.as_str(), port.as_str()), ("127.0.0.1", "80"));
//! })
//! .unwrap();
//! ```

use std::ffi::CStr;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// `getnameinfo` flag: the numeric form of the host.
pub const NI_NUMERICHOST: i32 = libc::NI_NUMERICHOST;
/// `getnameinfo` flag: the numeric form of the service (port).
pub const NI_NUMERICSERV: i32 = libc::NI_NUMERICSERV;
/// `getnameinfo` flag: fail when the host has no name.
pub const NI_NAMEREQD: i32 = libc::NI_NAMEREQD;
/// `getnameinfo` flag: a datagram service (`"domain"` vs `"dns"`...).
pub const NI_DGRAM: i32 = libc::NI_DGRAM;

/// Resolves `host` (a name or an address literal) and `port` to socket
/// addresses with the system resolver (`getaddrinfo(3)`), on the blocking
/// pool. Errors are `io::Error`s (an unknown host is the resolver's
/// message, kind `Other` or `NotFound` depending on the platform).
pub async fn getaddrinfo(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if host.as_bytes().contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "host contains a NUL byte"));
    }
    let host = host.to_owned();
    crate::spawn_blocking(move || (host.as_str(), port).to_socket_addrs().map(Iterator::collect))
        .await
        .map_err(|e| io::Error::other(e.to_string()))?
}

/// The host and service names of `addr` (`getnameinfo(3)`), on the blocking
/// pool; `flags` is a combination of the `NI_*` constants (0: names, as
/// asyncio's default).
pub async fn getnameinfo(addr: SocketAddr, flags: i32) -> io::Result<(String, String)> {
    crate::spawn_blocking(move || getnameinfo_blocking(addr, flags))
        .await
        .map_err(|e| io::Error::other(e.to_string()))?
}

fn getnameinfo_blocking(addr: SocketAddr, flags: i32) -> io::Result<(String, String)> {
    let sa = socket2::SockAddr::from(addr);
    let mut host = [0 as libc::c_char; libc::NI_MAXHOST as usize];
    let mut serv = [0 as libc::c_char; 32];
    // `sa` is a valid sockaddr of `sa.len()` bytes; `host` and `serv` are
    // writable buffers of the lengths passed, NUL-terminated on success.
    // SAFETY: the pointers and lengths are valid, as just explained.
    let rc = unsafe {
        libc::getnameinfo(
            sa.as_ptr().cast(),
            sa.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            serv.as_mut_ptr(),
            serv.len() as libc::socklen_t,
            flags,
        )
    };
    if rc != 0 {
        return Err(gai_error(rc));
    }
    // SAFETY: on success both buffers hold NUL-terminated strings.
    let (h, s) = unsafe { (CStr::from_ptr(host.as_ptr()), CStr::from_ptr(serv.as_ptr())) };
    Ok((h.to_string_lossy().into_owned(), s.to_string_lossy().into_owned()))
}

fn gai_error(rc: i32) -> io::Error {
    if rc == libc::EAI_SYSTEM {
        return io::Error::last_os_error();
    }
    // SAFETY: gai_strerror returns a pointer to a static NUL-terminated string.
    let msg = unsafe { CStr::from_ptr(libc::gai_strerror(rc)) }.to_string_lossy();
    let kind = match rc {
        libc::EAI_NONAME => io::ErrorKind::NotFound,
        libc::EAI_BADFLAGS | libc::EAI_FAMILY => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("getnameinfo failed: {msg}"))
}
