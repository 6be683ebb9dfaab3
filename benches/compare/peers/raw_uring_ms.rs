//! The multishot io_uring ceiling (`raw-uring-ms`): no runtime, one ring with
//! IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, one multishot
//! accept, and per connection one multishot `IORING_OP_RECV` with
//! `IOSQE_BUFFER_SELECT` from a provided-buffer ring
//! (`IORING_REGISTER_PBUF_RING`, [`NBUF`] buffers of [`BUFSZ`] bytes shared by
//! all connections). The receive stays armed across messages, so the kernel
//! keeps one internal poll per connection instead of arming one per
//! receive that finds no data.
//!
//! - TCP echo: every received chunk is sent back from its provided buffer
//!   (one SEND in flight per connection, chunks queued in arrival order);
//!   the buffer goes back to the ring when its send has completed.
//! - HTTP: every received chunk is copied into the connection's
//!   [`http::Input`] and its buffer goes back at once; responses go out with
//!   one SEND in flight per connection (responses to requests that arrive
//!   meanwhile are collected for the next send).
//! - UDP: not served (the harness reports the rows as skipped).
//!
//! A receive CQE without IORING_CQE_F_MORE ends that multishot receive: it is
//! re-armed at once after data, after the provided buffers ran out
//! (`ENOBUFS`) as soon as some buffer has been returned, and not at all after
//! EOF or an error (the connection closes once its send is done).
//!
//! Needs Linux 6.0 (multishot receive); probed at start with a receive on a
//! socket pair, and an unsupported kernel makes the peer report `skipped:`.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::http;
use super::raw_uring::wait;

/// Provided buffers in the ring (a power of two, at most 32768).
const NBUF: u16 = 2048;
/// Bytes per provided buffer.
const BUFSZ: usize = 16 * 1024;
/// The buffer group id of the one ring.
const BGID: u16 = 0;

const ACCEPT: u64 = 0;
const RECV: u64 = 1;
const SEND: u64 = 2;
/// Cancellations and the start-up probe: their CQEs need no action.
const OTHER: u64 = 3;

/// `struct io_uring_buf` of the kernel uapi; the ring's tail is the `resv`
/// field of entry 0.
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// The provided-buffer ring: page-aligned entries (mmap'd) plus the buffers.
struct BufRing {
    entries: *mut RingEntry,
    map_len: usize,
    bufs: Box<[u8]>,
    /// Our tail: entries up to it are written; published by [`publish`].
    tail: u16,
    /// Buffers the kernel has handed to us (in CQEs) and we have not given
    /// back: while below NBUF the ring has buffers, as far as we know.
    held: usize,
}

impl BufRing {
    /// Maps the ring and allocates the buffers; registration is separate.
    fn new() -> io::Result<BufRing> {
        let map_len = NBUF as usize * std::mem::size_of::<RingEntry>();
        // SAFETY: an anonymous private mapping; the result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(BufRing {
            entries: p.cast(),
            map_len,
            bufs: vec![0u8; NBUF as usize * BUFSZ].into_boxed_slice(),
            tail: 0,
            // Until `setup` gives them all to the kernel.
            held: NBUF as usize,
        })
    }

    fn buf_ptr(&self, bid: u16) -> *const u8 {
        // SAFETY: bid < NBUF, so the offset stays inside `bufs`.
        unsafe { self.bufs.as_ptr().add(bid as usize * BUFSZ) }
    }

    /// Queues buffer `bid` for the kernel (visible after [`publish`]).
    fn give(&mut self, bid: u16) {
        let e = (self.tail & (NBUF - 1)) as usize;
        let addr = self.buf_ptr(bid) as u64;
        // The kernel reads only entries between its head and the published
        // tail, and this one is past the tail; `resv` (entry 0's tail) is not
        // written here.
        // SAFETY: e < NBUF entries of the live mapping, not read by the kernel yet.
        unsafe {
            let p = self.entries.add(e);
            std::ptr::addr_of_mut!((*p).addr).write(addr);
            std::ptr::addr_of_mut!((*p).len).write(BUFSZ as u32);
            std::ptr::addr_of_mut!((*p).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        self.held -= 1;
    }

    /// Records that a CQE handed us a buffer; returns its id.
    fn take(&mut self, flags: u32) -> Option<u16> {
        let bid = cqueue::buffer_select(flags)?;
        self.held += 1;
        Some(bid)
    }

    /// Makes the given buffers visible to the kernel (release store of the
    /// tail, which the kernel reads with acquire).
    fn publish(&self) {
        // SAFETY: entry 0's `resv` is the ring tail, a naturally aligned u16
        // inside the mapping that only we write (the kernel only reads it).
        let tail = unsafe { AtomicU16::from_ptr(std::ptr::addr_of_mut!((*self.entries).resv)) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: our own mapping. Declared before the ring in `serve_tcp`,
        // so the ring (and the kernel's registration) is gone first.
        unsafe { libc::munmap(self.entries.cast(), self.map_len) };
    }
}

/// A ring with SINGLE_ISSUER | DEFER_TASKRUN and the buffer ring registered
/// and filled, or `skipped: <why>`.
fn setup(bufs: &mut BufRing) -> io::Result<IoUring> {
    let skipped = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("skipped: {what}: {e}"));
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(8192)
        .build(1024)
        .map_err(|e| skipped("io_uring setup with SINGLE_ISSUER|DEFER_TASKRUN refused", e))?;
    // SAFETY: the entries live in `bufs`' mapping, which outlives the ring
    // (see `BufRing::drop`), and NBUF is a power of two.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(bufs.entries as u64, NBUF, BGID, 0)
            .map_err(|e| skipped("IORING_REGISTER_PBUF_RING refused (needs Linux 5.19)", e))?;
    }
    for bid in 0..NBUF {
        bufs.give(bid);
    }
    bufs.publish();
    Ok(ring)
}

fn push(ring: &mut IoUring, e: squeue::Entry) -> io::Result<()> {
    loop {
        // Entries point into the provided buffers (in the `BufRing`, which
        // outlives the ring), a connection's HTTP output `Vec` (not touched
        // while its send is in flight) or the probe's byte.
        // SAFETY: every pointer an entry carries stays valid until its CQE.
        if unsafe { ring.submission().push(&e) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

/// Checks that this kernel runs a multishot buffer-select receive: one byte
/// through a socket pair must arrive in a provided buffer.
fn probe(ring: &mut IoUring, bufs: &mut BufRing) -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two fds on success.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and ours.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    push(ring, recv_multi(&a, OTHER))?;
    // SAFETY: writes one byte from a live local.
    if unsafe { libc::write(b.as_raw_fd(), b"x".as_ptr().cast(), 1) } != 1 {
        return Err(io::Error::last_os_error());
    }
    let mut b = Some(b);
    loop {
        wait(ring)?;
        let cqes: Vec<(i32, u32)> = ring.completion().map(|c| (c.result(), c.flags())).collect();
        for (res, flags) in cqes {
            if let Some(bid) = bufs.take(flags) {
                bufs.give(bid);
                bufs.publish();
            }
            if res < 0 && b.is_some() {
                let e = io::Error::from_raw_os_error(-res);
                return Err(io::Error::new(
                    e.kind(),
                    format!("skipped: multishot IORING_OP_RECV refused (needs Linux 6.0): {e}"),
                ));
            }
            if !cqueue::more(flags) {
                return Ok(());
            }
            // The byte arrived: closing the other end ends the receive (EOF).
            b = None;
        }
    }
}

fn recv_multi(fd: &OwnedFd, ud: u64) -> squeue::Entry {
    opcode::RecvMulti::new(types::Fd(fd.as_raw_fd()), BGID)
        .build()
        .user_data(ud)
}

/// A received chunk of an echo connection, waiting in provided buffer `bid`
/// until `off` reaches `end`.
struct Chunk {
    bid: u16,
    off: u32,
    end: u32,
}

/// What a connection still has to send.
enum Out {
    /// Echo: chunks in arrival order; the front one is in flight when
    /// `Conn::sending`.
    Echo(VecDeque<Chunk>),
    /// HTTP: `out[off..]` is in flight when `Conn::sending`; responses to
    /// requests completed meanwhile collect in `next`.
    Http {
        input: http::Input,
        out: Vec<u8>,
        off: usize,
        next: Vec<u8>,
    },
}

struct Conn {
    fd: OwnedFd,
    out: Out,
    /// A multishot receive is in the kernel (its final CQE is still due).
    recv_armed: bool,
    /// An AsyncCancel for that receive has been submitted.
    cancelled: bool,
    /// Its receive ended with ENOBUFS: re-armed once a buffer is returned.
    waiting: bool,
    sending: bool,
    /// EOF or an error: no more receives; freed once nothing is in flight.
    closing: bool,
}

impl Conn {
    /// Takes in a received chunk in provided buffer `bid`; `false` when the
    /// connection must close (an HTTP request head over the cap).
    fn received(&mut self, bufs: &mut BufRing, bid: u16, len: usize) -> bool {
        match &mut self.out {
            Out::Echo(q) => {
                q.push_back(Chunk {
                    bid,
                    off: 0,
                    end: len as u32,
                });
                true
            }
            Out::Http { input, next, .. } => {
                // The kernel does not touch buffer `bid` again until we give
                // it back (below, after this copy).
                // SAFETY: the kernel wrote `len` <= BUFSZ bytes into buffer `bid`.
                let data = unsafe { std::slice::from_raw_parts(bufs.buf_ptr(bid), len) };
                let mut ok = true;
                let mut rest = data;
                while !rest.is_empty() {
                    let Some(spare) = input.spare() else {
                        ok = false;
                        break;
                    };
                    let n = spare.len().min(rest.len());
                    spare[..n].copy_from_slice(&rest[..n]);
                    input.received(n, next);
                    rest = &rest[n..];
                }
                bufs.give(bid);
                ok
            }
        }
    }

    /// The next send, if there is something to send and none in flight.
    fn send(&mut self, bufs: &BufRing, slot: usize) -> Option<squeue::Entry> {
        if self.sending || self.closing {
            return None;
        }
        let (p, n) = match &mut self.out {
            Out::Echo(q) => {
                let c = q.front()?;
                // SAFETY: off < end <= BUFSZ: inside buffer `bid`.
                (unsafe { bufs.buf_ptr(c.bid).add(c.off as usize) }, c.end - c.off)
            }
            Out::Http { out, off, next, .. } => {
                if *off == out.len() {
                    if next.is_empty() {
                        return None;
                    }
                    out.clear();
                    std::mem::swap(out, next);
                    *off = 0;
                }
                let rest = &out[*off..];
                (rest.as_ptr(), rest.len() as u32)
            }
        };
        self.sending = true;
        Some(
            opcode::Send::new(types::Fd(self.fd.as_raw_fd()), p, n)
                .build()
                .user_data((slot as u64) << 2 | SEND),
        )
    }

    /// Records `n` bytes sent by the send in flight.
    fn sent(&mut self, bufs: &mut BufRing, n: usize) {
        self.sending = false;
        match &mut self.out {
            Out::Echo(q) => {
                if let Some(c) = q.front_mut() {
                    c.off += n as u32;
                    if c.off >= c.end {
                        bufs.give(c.bid);
                        q.pop_front();
                    }
                }
            }
            Out::Http { off, .. } => *off += n,
        }
    }

    /// Gives back every queued buffer not in flight (on close).
    fn drop_queued(&mut self, bufs: &mut BufRing) {
        if let Out::Echo(q) = &mut self.out {
            let keep = usize::from(self.sending);
            while q.len() > keep {
                let c = q.pop_back().expect("len > keep");
                bufs.give(c.bid);
            }
        }
    }
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

/// Serves TCP echo (`http == false`) or HTTP on `l` until killed.
pub fn serve(l: std::net::TcpListener, http: bool, ready: impl FnOnce() + 'static) -> io::Result<()> {
    // Declared before the ring so it is dropped after it.
    let mut bufs = BufRing::new()?;
    let mut ring = setup(&mut bufs)?;
    probe(&mut ring, &mut bufs)?;
    let accept = opcode::AcceptMulti::new(types::Fd(l.as_raw_fd()))
        .build()
        .user_data(ACCEPT);
    push(&mut ring, accept.clone())?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut waiting: VecDeque<usize> = VecDeque::new();
    ready();
    loop {
        wait(&mut ring)?;
        let given = bufs.tail;
        let cqes: Vec<(u64, i32, u32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        for (ud, res, flags) in cqes {
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
                        push(&mut ring, recv_multi(&fd, (s as u64) << 2 | RECV))?;
                        let out = if http {
                            Out::Http {
                                input: http::Input::default(),
                                out: Vec::with_capacity(http::RESPONSE.len()),
                                off: 0,
                                next: Vec::with_capacity(http::RESPONSE.len()),
                            }
                        } else {
                            Out::Echo(VecDeque::new())
                        };
                        conns[s] = Some(Conn {
                            fd,
                            out,
                            recv_armed: true,
                            cancelled: false,
                            waiting: false,
                            sending: false,
                            closing: false,
                        });
                    }
                    if !cqueue::more(flags) {
                        push(&mut ring, accept.clone())?;
                    }
                }
                RECV => {
                    let Some(c) = conns.get_mut(slot).and_then(Option::as_mut) else {
                        continue;
                    };
                    if res > 0 {
                        let bid = bufs.take(flags).expect("a buffer-select receive names its buffer");
                        if c.closing {
                            bufs.give(bid);
                        } else if !c.received(&mut bufs, bid, res as usize) {
                            c.closing = true;
                        }
                    }
                    if !cqueue::more(flags) {
                        c.recv_armed = false;
                        if !c.closing {
                            if res == -libc::ENOBUFS {
                                c.waiting = true;
                                waiting.push_back(slot);
                            } else if res > 0 {
                                push(&mut ring, recv_multi(&c.fd, ud))?;
                                c.recv_armed = true;
                            } else {
                                c.closing = true; // EOF or error
                            }
                        }
                    }
                }
                SEND => {
                    let Some(c) = conns.get_mut(slot).and_then(Option::as_mut) else {
                        continue;
                    };
                    if res < 0 {
                        // The unsent chunk goes back with the rest on close.
                        c.sending = false;
                        c.closing = true;
                    } else {
                        c.sent(&mut bufs, res as usize);
                    }
                }
                _ => continue,
            }
            if ud & 3 == ACCEPT {
                continue;
            }
            // Connection `slot` changed: send more, or wind it down.
            let Some(c) = conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if let Some(e) = c.send(&bufs, slot) {
                push(&mut ring, e)?;
            } else if c.closing {
                c.drop_queued(&mut bufs);
                c.waiting = false;
                if c.recv_armed && !c.cancelled {
                    // Ends the multishot receive; its final CQE (without
                    // IORING_CQE_F_MORE) comes back through RECV above.
                    let cancel = opcode::AsyncCancel::new((slot as u64) << 2 | RECV)
                        .build()
                        .user_data(OTHER);
                    push(&mut ring, cancel)?;
                    c.cancelled = true;
                }
                if !c.recv_armed && !c.sending {
                    // No CQE names this slot any more: free it (closes the fd).
                    conns[slot] = None;
                    free.push(slot);
                }
            }
        }
        if bufs.tail != given {
            bufs.publish();
        }
        // Receives that ran out of buffers go again, oldest first, as many
        // as the ring has buffers (returned in this batch or earlier: an
        // ENOBUFS CQE can arrive after the buffers came back). Should the
        // kernel still be out, the receive ends with ENOBUFS and waits again.
        let mut room = NBUF as usize - bufs.held;
        while room > 0 {
            let Some(s) = waiting.pop_front() else { break };
            // A slot freed and reused meanwhile has `waiting == false`.
            let Some(c) = conns.get_mut(s).and_then(Option::as_mut) else {
                continue;
            };
            if c.waiting {
                c.waiting = false;
                c.recv_armed = true;
                push(&mut ring, recv_multi(&c.fd, (s as u64) << 2 | RECV))?;
                room -= 1;
            }
        }
    }
}
