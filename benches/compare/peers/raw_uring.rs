//! The io_uring ceiling: no runtime, one ring, one recv or send SQE in flight
//! per connection, re-armed accept. `sq_dt` asks for
//! IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (errors if refused).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{IoUring, opcode, squeue, types};

use super::BUF;

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
        // SAFETY: every buffer an entry points at lives in a `Conn` that stays in
        // `conns` (boxed, never moved) until its op's CQE has been reaped.
        if unsafe { ring.submission().push(&e) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
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
        ring.submit_and_wait(1)?;
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
