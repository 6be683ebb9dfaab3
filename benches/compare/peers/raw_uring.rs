//! The io_uring ceiling: no runtime, one ring, one recv or send SQE in flight
//! per connection, re-armed accept (TCP echo and HTTP); for UDP echo exactly
//! one RecvMsg or SendMsg in flight on the one socket. `sq_dt` asks for
//! IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (errors if refused).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{IoUring, opcode, squeue, types};

use super::{BUF, http};

const ACCEPT: u64 = 0;
const RECV: u64 = 1;
const SEND: u64 = 2;

struct Conn {
    fd: OwnedFd,
    buf: Box<[u8]>,
    len: usize,
    off: usize,
}

fn push(ring: &mut IoUring, e: squeue::Entry) -> io::Result<()> {
    loop {
        // Entries point into a connection's buffers (kept in `conns`, not
        // resized meanwhile) or the boxed UDP `Dgram`.
        // SAFETY: every pointer an entry carries stays allocated and in place until its CQE.
        if unsafe { ring.submission().push(&e) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

/// Submits and waits for at least one CQE. A signal (e.g. `strace`
/// attaching while the ring is idle) interrupts the wait with EINTR: wait
/// again.
pub fn wait(ring: &mut IoUring) -> io::Result<()> {
    loop {
        match ring.submit_and_wait(1) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(drop),
        }
    }
}

fn recv(c: &mut Conn, slot: usize) -> squeue::Entry {
    opcode::Recv::new(types::Fd(c.fd.as_raw_fd()), c.buf.as_mut_ptr(), BUF as u32)
        .build()
        .user_data((slot as u64) << 2 | RECV)
}

fn send(c: &Conn, slot: usize) -> squeue::Entry {
    // SAFETY: off < len <= BUF, so the pointer stays inside `buf`.
    let p = unsafe { c.buf.as_ptr().add(c.off) };
    opcode::Send::new(types::Fd(c.fd.as_raw_fd()), p, (c.len - c.off) as u32)
        .build()
        .user_data((slot as u64) << 2 | SEND)
}

pub fn serve(l: std::net::TcpListener, sq_dt: bool, ready: impl FnOnce() + 'static) -> io::Result<()> {
    let mut b = IoUring::builder();
    if sq_dt {
        b.setup_single_issuer().setup_defer_taskrun();
    }
    let mut ring = b
        .build(1024)
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring setup refused: {e}")))?;
    let lfd = l.as_raw_fd();
    let accept = opcode::Accept::new(types::Fd(lfd), std::ptr::null_mut(), std::ptr::null_mut())
        .build()
        .user_data(ACCEPT);
    push(&mut ring, accept.clone())?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    ready();
    loop {
        wait(&mut ring)?;
        let cqes: Vec<(u64, i32)> = ring.completion().map(|c| (c.user_data(), c.result())).collect();
        for (ud, res) in cqes {
            let slot = (ud >> 2) as usize;
            match ud & 3 {
                ACCEPT => {
                    if res >= 0 {
                        // SAFETY: a successful accept CQE carries a new fd we now own.
                        let fd = unsafe { OwnedFd::from_raw_fd(res) };
                        let one: libc::c_int = 1;
                        // SAFETY: valid fd, option pointer/len describe a c_int.
                        unsafe {
                            libc::setsockopt(
                                fd.as_raw_fd(),
                                libc::IPPROTO_TCP,
                                libc::TCP_NODELAY,
                                (&one as *const libc::c_int).cast(),
                                4,
                            )
                        };
                        let c = Conn {
                            fd,
                            buf: vec![0u8; BUF].into_boxed_slice(),
                            len: 0,
                            off: 0,
                        };
                        let s = free.pop().unwrap_or_else(|| {
                            conns.push(None);
                            conns.len() - 1
                        });
                        let c = conns[s].insert(c);
                        push(&mut ring, recv(c, s))?;
                    }
                    push(&mut ring, accept.clone())?;
                }
                kind => {
                    let Some(c) = conns[slot].as_mut() else { continue };
                    if res <= 0 {
                        conns[slot] = None; // closes the fd
                        free.push(slot);
                    } else if kind == RECV {
                        (c.len, c.off) = (res as usize, 0);
                        push(&mut ring, send(c, slot))?;
                    } else {
                        c.off += res as usize;
                        let e = if c.off < c.len { send(c, slot) } else { recv(c, slot) };
                        push(&mut ring, e)?;
                    }
                }
            }
        }
    }
}

fn ring(sq_dt: bool, entries: u32) -> io::Result<IoUring> {
    let mut b = IoUring::builder();
    if sq_dt {
        b.setup_single_issuer().setup_defer_taskrun();
    }
    b.build(entries)
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring setup refused: {e}")))
}

fn set_nodelay(fd: &OwnedFd) {
    let one: libc::c_int = 1;
    // SAFETY: valid fd, option pointer/len describe a c_int.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            4,
        )
    };
}

/// An HTTP connection: one recv (into the input's free tail) or one send (of
/// the pending responses) in flight at a time.
struct HttpConn {
    fd: OwnedFd,
    input: http::Input,
    out: Vec<u8>,
    off: usize,
}

/// The recv for `c`, or `None` when its request head outgrew the cap.
fn http_recv(c: &mut HttpConn, slot: usize) -> Option<squeue::Entry> {
    let fd = types::Fd(c.fd.as_raw_fd());
    let spare = c.input.spare()?;
    let len = spare.len().min(u32::MAX as usize) as u32;
    Some(
        opcode::Recv::new(fd, spare.as_mut_ptr(), len)
            .build()
            .user_data((slot as u64) << 2 | RECV),
    )
}

fn http_send(c: &HttpConn, slot: usize) -> squeue::Entry {
    let rest = &c.out[c.off..];
    opcode::Send::new(types::Fd(c.fd.as_raw_fd()), rest.as_ptr(), rest.len() as u32)
        .build()
        .user_data((slot as u64) << 2 | SEND)
}

pub fn serve_http(l: std::net::TcpListener, sq_dt: bool, ready: impl FnOnce() + 'static) -> io::Result<()> {
    let mut ring = ring(sq_dt, 1024)?;
    let accept = opcode::Accept::new(types::Fd(l.as_raw_fd()), std::ptr::null_mut(), std::ptr::null_mut())
        .build()
        .user_data(ACCEPT);
    push(&mut ring, accept.clone())?;
    // The kernel's pointers go into each connection's input and output heap
    // storage, which is resized only while none of its operations is in
    // flight, so connections themselves may move.
    let mut conns: Vec<Option<HttpConn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    ready();
    loop {
        wait(&mut ring)?;
        let cqes: Vec<(u64, i32)> = ring.completion().map(|c| (c.user_data(), c.result())).collect();
        for (ud, res) in cqes {
            let slot = (ud >> 2) as usize;
            match ud & 3 {
                ACCEPT => {
                    if res >= 0 {
                        // SAFETY: a successful accept CQE carries a new fd we now own.
                        let fd = unsafe { OwnedFd::from_raw_fd(res) };
                        set_nodelay(&fd);
                        let s = free.pop().unwrap_or_else(|| {
                            conns.push(None);
                            conns.len() - 1
                        });
                        let c = conns[s].insert(HttpConn {
                            fd,
                            input: http::Input::default(),
                            out: Vec::with_capacity(http::RESPONSE.len()),
                            off: 0,
                        });
                        let e = http_recv(c, s).expect("a fresh input has room");
                        push(&mut ring, e)?;
                    }
                    push(&mut ring, accept.clone())?;
                }
                kind => {
                    let Some(c) = conns[slot].as_mut() else { continue };
                    let next = if res <= 0 {
                        None
                    } else if kind == RECV {
                        c.input.received(res as usize, &mut c.out);
                        if c.out.is_empty() {
                            http_recv(c, slot)
                        } else {
                            c.off = 0;
                            Some(http_send(c, slot))
                        }
                    } else {
                        c.off += res as usize;
                        if c.off < c.out.len() {
                            Some(http_send(c, slot))
                        } else {
                            c.out.clear();
                            http_recv(c, slot)
                        }
                    };
                    match next {
                        Some(e) => push(&mut ring, e)?,
                        None => {
                            conns[slot] = None; // closes the fd
                            free.push(slot);
                        }
                    }
                }
            }
        }
    }
}

/// The UDP echo state: the kernel holds pointers into it (the msghdr, its
/// iovec, address and buffer) while the one RecvMsg or SendMsg is in flight.
struct Dgram {
    buf: Box<[u8]>,
    addr: libc::sockaddr_storage,
    iov: libc::iovec,
    msg: libc::msghdr,
}

/// Re-arms `d` for a receive of up to `BUF` bytes from any sender.
fn dgram_recv(d: &mut Dgram, fd: types::Fd) -> squeue::Entry {
    d.iov = libc::iovec {
        iov_base: d.buf.as_mut_ptr().cast(),
        iov_len: BUF,
    };
    d.msg.msg_name = (&raw mut d.addr).cast();
    d.msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    d.msg.msg_iov = &raw mut d.iov;
    d.msg.msg_iovlen = 1;
    d.msg.msg_control = std::ptr::null_mut();
    d.msg.msg_controllen = 0;
    d.msg.msg_flags = 0;
    opcode::RecvMsg::new(fd, &raw mut d.msg).build().user_data(RECV)
}

pub fn serve_udp(s: std::net::UdpSocket, sq_dt: bool, ready: impl FnOnce() + 'static) -> io::Result<()> {
    let mut ring = ring(sq_dt, 64)?;
    let fd = types::Fd(s.as_raw_fd());
    // SAFETY: sockaddr_storage, iovec and msghdr are plain C structs for
    // which all-zero bytes (null pointers, zero lengths) are valid.
    let (addr, iov, msg) = unsafe { (std::mem::zeroed(), std::mem::zeroed(), std::mem::zeroed()) };
    // Boxed: the kernel's pointers into it must stay valid; it never moves.
    let mut d = Box::new(Dgram {
        buf: vec![0u8; BUF].into_boxed_slice(),
        addr,
        iov,
        msg,
    });
    push(&mut ring, dgram_recv(&mut d, fd))?;
    ready();
    loop {
        wait(&mut ring)?;
        let Some(cqe) = ring.completion().next() else { continue };
        let res = cqe.result();
        let e = if cqe.user_data() == RECV && res >= 0 {
            // Send the received bytes back to the address recvmsg filled in
            // (msg_name / msg_namelen as the kernel left them).
            d.iov.iov_len = res as usize;
            opcode::SendMsg::new(fd, &raw const d.msg).build().user_data(SEND)
        } else if cqe.user_data() == RECV && !super::transient_udp_error(&io::Error::from_raw_os_error(-res)) {
            return Err(io::Error::from_raw_os_error(-res));
        } else {
            // A receive to retry, or a send done (a failed send loses that
            // one datagram, like any UDP drop).
            dgram_recv(&mut d, fd)
        };
        push(&mut ring, e)?;
    }
}
