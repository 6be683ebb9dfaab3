//! The readiness ceiling: level-triggered epoll, non-blocking sockets, one
//! read then write per readiness event; EPOLLOUT only while a write is short
//! (TCP echo and HTTP). UDP echo: `recvfrom` until EAGAIN, `sendto` after
//! each; EPOLLOUT only while a datagram waits for send-buffer room.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{BUF, http};

struct Conn {
    fd: OwnedFd,
    buf: Box<[u8]>,
    len: usize,
    off: usize,
}

fn ctl(ep: i32, op: i32, fd: i32, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    if unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) } < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Writes the pending bytes; Ok(true) when all are out, Ok(false) on EAGAIN.
fn flush(c: &mut Conn) -> io::Result<bool> {
    while c.off < c.len {
        // SAFETY: off < len <= BUF: the range lies inside `buf`.
        let n = unsafe { libc::write(c.fd.as_raw_fd(), c.buf.as_ptr().add(c.off).cast(), c.len - c.off) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(false)
            } else {
                Err(e)
            };
        }
        c.off += n as usize;
    }
    Ok(true)
}

pub fn serve(l: std::net::TcpListener, ready: impl FnOnce() + 'static) -> io::Result<()> {
    l.set_nonblocking(true)?;
    // SAFETY: plain syscall; the result is checked.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ep` is a fresh fd we own.
    let _ep_owner = unsafe { OwnedFd::from_raw_fd(ep) };
    ctl(ep, libc::EPOLL_CTL_ADD, l.as_raw_fd(), libc::EPOLLIN as u32, u64::MAX)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    ready();
    loop {
        // SAFETY: `evs` has room for evs.len() events.
        let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), evs.len() as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &evs[..n as usize] {
            let token = ev.u64;
            if token == u64::MAX {
                while let Ok((s, _)) = l.accept() {
                    s.set_nonblocking(true)?;
                    s.set_nodelay(true)?;
                    let slot = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    ctl(
                        ep,
                        libc::EPOLL_CTL_ADD,
                        s.as_raw_fd(),
                        libc::EPOLLIN as u32,
                        slot as u64,
                    )?;
                    conns[slot] = Some(Conn {
                        fd: s.into(),
                        buf: vec![0u8; BUF].into_boxed_slice(),
                        len: 0,
                        off: 0,
                    });
                }
                continue;
            }
            let slot = token as usize;
            let Some(c) = conns[slot].as_mut() else { continue };
            let was_blocked = c.off < c.len;
            let ok = if was_blocked {
                flush(c)
            } else {
                // SAFETY: reads at most BUF bytes into the BUF-byte buffer.
                let r = unsafe { libc::read(c.fd.as_raw_fd(), c.buf.as_mut_ptr().cast(), BUF) };
                if r <= 0 {
                    let e = io::Error::last_os_error();
                    if r < 0 && e.kind() == io::ErrorKind::WouldBlock {
                        continue;
                    }
                    Err(e)
                } else {
                    (c.len, c.off) = (r as usize, 0);
                    flush(c)
                }
            };
            match ok {
                Ok(true) if was_blocked => ctl(ep, libc::EPOLL_CTL_MOD, c.fd.as_raw_fd(), libc::EPOLLIN as u32, token)?,
                Ok(false) if !was_blocked => {
                    ctl(ep, libc::EPOLL_CTL_MOD, c.fd.as_raw_fd(), libc::EPOLLOUT as u32, token)?
                }
                Ok(_) => {}
                Err(_) => {
                    conns[slot] = None; // closing the fd also removes it from the epoll set
                    free.push(slot);
                }
            }
        }
    }
}

fn epoll() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ep` is a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(ep) })
}

/// `epoll_wait` into `evs`, retried on EINTR; returns the ready count.
fn wait(ep: i32, evs: &mut [libc::epoll_event]) -> io::Result<usize> {
    loop {
        // SAFETY: `evs` has room for evs.len() events.
        let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), evs.len() as i32, -1) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

struct HttpConn {
    fd: OwnedFd,
    input: http::Input,
    out: Vec<u8>,
    off: usize,
}

/// Writes the pending responses; Ok(true) when all are out (the output is
/// then emptied for reuse), Ok(false) on EAGAIN.
fn flush_http(c: &mut HttpConn) -> io::Result<bool> {
    while c.off < c.out.len() {
        let rest = &c.out[c.off..];
        // SAFETY: `rest` is a live byte slice of `rest.len()` bytes.
        let n = unsafe { libc::write(c.fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(false)
            } else {
                Err(e)
            };
        }
        c.off += n as usize;
    }
    c.out.clear();
    c.off = 0;
    Ok(true)
}

pub fn serve_http(l: std::net::TcpListener, ready: impl FnOnce() + 'static) -> io::Result<()> {
    l.set_nonblocking(true)?;
    let ep_owner = epoll()?;
    let ep = ep_owner.as_raw_fd();
    ctl(ep, libc::EPOLL_CTL_ADD, l.as_raw_fd(), libc::EPOLLIN as u32, u64::MAX)?;
    let mut conns: Vec<Option<HttpConn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    ready();
    loop {
        let n = wait(ep, &mut evs)?;
        for ev in &evs[..n] {
            let token = ev.u64;
            if token == u64::MAX {
                while let Ok((s, _)) = l.accept() {
                    s.set_nonblocking(true)?;
                    s.set_nodelay(true)?;
                    let slot = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    ctl(
                        ep,
                        libc::EPOLL_CTL_ADD,
                        s.as_raw_fd(),
                        libc::EPOLLIN as u32,
                        slot as u64,
                    )?;
                    conns[slot] = Some(HttpConn {
                        fd: s.into(),
                        input: http::Input::default(),
                        out: Vec::with_capacity(http::RESPONSE.len()),
                        off: 0,
                    });
                }
                continue;
            }
            let slot = token as usize;
            let Some(c) = conns[slot].as_mut() else { continue };
            let was_blocked = c.off < c.out.len();
            let ok = if was_blocked {
                flush_http(c)
            } else {
                let fd = c.fd.as_raw_fd();
                match c.input.spare() {
                    None => Err(io::Error::other("request head too large")),
                    Some(spare) => {
                        // SAFETY: reads at most spare.len() bytes into `spare`.
                        let r = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
                        if r < 0 {
                            let e = io::Error::last_os_error();
                            if e.kind() == io::ErrorKind::WouldBlock {
                                continue;
                            }
                            Err(e)
                        } else if r == 0 {
                            Err(io::ErrorKind::UnexpectedEof.into())
                        } else {
                            c.input.received(r as usize, &mut c.out);
                            flush_http(c)
                        }
                    }
                }
            };
            match ok {
                Ok(true) if was_blocked => ctl(ep, libc::EPOLL_CTL_MOD, c.fd.as_raw_fd(), libc::EPOLLIN as u32, token)?,
                Ok(false) if !was_blocked => {
                    ctl(ep, libc::EPOLL_CTL_MOD, c.fd.as_raw_fd(), libc::EPOLLOUT as u32, token)?
                }
                Ok(_) => {}
                Err(_) => {
                    conns[slot] = None; // closing the fd also removes it from the epoll set
                    free.push(slot);
                }
            }
        }
    }
}

pub fn serve_udp(s: std::net::UdpSocket, ready: impl FnOnce() + 'static) -> io::Result<()> {
    s.set_nonblocking(true)?;
    let fd = s.as_raw_fd();
    let ep_owner = epoll()?;
    let ep = ep_owner.as_raw_fd();
    ctl(ep, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, 0)?;
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }];
    let mut buf = vec![0u8; BUF];
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut addr_len: libc::socklen_t = 0;
    // Length of a received datagram still waiting for send-buffer room.
    let mut pending: Option<usize> = None;
    // Sends `buf[..n]` to `addr`; Ok(false) on EAGAIN (keep the datagram).
    let send = |buf: &[u8], addr: &libc::sockaddr_storage, addr_len: libc::socklen_t| loop {
        // SAFETY: `buf` is a live slice; `addr` holds `addr_len` bytes of
        // the address recvfrom filled in.
        let r = unsafe {
            libc::sendto(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (addr as *const libc::sockaddr_storage).cast(),
                addr_len,
            )
        };
        if r >= 0 {
            return true;
        }
        match io::Error::last_os_error().kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return false,
            // Any other failure loses that one datagram, like any UDP drop.
            _ => return true,
        }
    };
    ready();
    loop {
        wait(ep, &mut evs)?;
        if let Some(n) = pending {
            if !send(&buf[..n], &addr, addr_len) {
                continue;
            }
            pending = None;
            ctl(ep, libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN as u32, 0)?;
        }
        loop {
            addr_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: `buf` has BUF writable bytes; `addr`/`addr_len`
            // describe a sockaddr_storage.
            let r = unsafe {
                libc::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    BUF,
                    0,
                    (&raw mut addr).cast(),
                    &mut addr_len,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    break;
                }
                if super::transient_udp_error(&e) {
                    continue;
                }
                return Err(e);
            }
            let n = r as usize;
            if !send(&buf[..n], &addr, addr_len) {
                pending = Some(n);
                ctl(ep, libc::EPOLL_CTL_MOD, fd, libc::EPOLLOUT as u32, 0)?;
                break;
            }
        }
    }
}
