//! The readiness ceiling: level-triggered epoll, non-blocking sockets, one
//! read then write per readiness event; EPOLLOUT only while a write is short.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::BUF;

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
