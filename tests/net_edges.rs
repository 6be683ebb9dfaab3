//! Stream patterns that hang if a readiness edge is lost or a short read is
//! taken for a drained buffer when it is not (the fallback backend caches
//! edge-triggered readiness) — both backends.
#![cfg(unix)]

mod common;

use ringloop::EventLoop;
use ringloop::buf::BufResult;
use ringloop::net::{TcpListener, TcpStream, UnixStream};
use ringloop::{AsyncReadOwned, AsyncWriteOwned};
use ringloop::{sleep, spawn, timeout, yield_now};
use std::future::Future;
use std::io::Write;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

/// Generous bound on any single step: a lost wake-up fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);

/// Runs `fut` as a task of its own and waits at most [`STEP`] for it. A
/// task whose wake-up was lost never finishes; a `timeout` wrapped around
/// the operation itself would poll it once more on expiry, and the
/// fallback backend retries its syscall on any poll, hiding the loss.
async fn bounded<T: 'static>(what: &str, fut: impl Future<Output = T> + 'static) -> T {
    match timeout(STEP, spawn(fut)).await {
        Ok(res) => res.unwrap(),
        Err(_) => panic!("{what} hung: a readiness wake-up was lost"),
    }
}

fn local() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A connected ringloop TCP pair (client, server side).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(local()).unwrap();
    let addr = listener.local_addr().unwrap();
    let client = spawn(async move { TcpStream::connect(addr).await.unwrap() });
    let (server, _) = listener.accept().await.unwrap();
    (client.await.unwrap(), server)
}

/// A ringloop TCP stream whose peer is a blocking std socket.
async fn tcp_with_std_peer() -> (TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind(local()).unwrap();
    let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    peer.set_nodelay(true).unwrap();
    let (ours, _) = listener.accept().unwrap();
    (TcpStream::from_std(ours).unwrap(), peer)
}

/// The stream types these tests run on.
trait Stream: AsyncReadOwned + AsyncWriteOwned + 'static {
    fn shutdown_write(&self);
}

impl Stream for TcpStream {
    fn shutdown_write(&self) {
        self.shutdown(Shutdown::Write).unwrap();
    }
}

impl Stream for UnixStream {
    fn shutdown_write(&self) {
        self.shutdown(Shutdown::Write).unwrap();
    }
}

/// One read of up to `cap` bytes from an `Rc` stream, [`bounded`].
async fn read_once<S: Stream>(stream: &Rc<S>, cap: usize) -> BufResult<usize, Vec<u8>> {
    let st = stream.clone();
    bounded("a read", async move { st.read(Vec::with_capacity(cap)).await }).await
}

/// Reads (up to 1024 bytes at a time, none of them empty) until at least
/// `n` bytes have arrived; returns them.
async fn read_at_least<S: Stream>(stream: &Rc<S>, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let (res, buf) = read_once(stream, 1024).await;
        let k = res.unwrap();
        assert!(k > 0);
        got.extend_from_slice(&buf[..k]);
    }
    got
}

/// Reads with buffer sizes cycling through `sizes` until end of stream;
/// returns everything read.
async fn read_to_end_in_sizes<S: Stream>(stream: &Rc<S>, sizes: &[usize]) -> Vec<u8> {
    let mut got: Vec<u8> = Vec::new();
    let mut i = 0usize;
    loop {
        let size = sizes[i % sizes.len()];
        i += 1;
        let st = stream.clone();
        let (res, buf) = bounded("a read", async move { st.read(Vec::with_capacity(size)).await }).await;
        let n = res.unwrap();
        assert!(n <= size);
        if n == 0 {
            break got;
        }
        got.extend_from_slice(&buf[..n]);
        // Sometimes let the writer run before reading on.
        if i % 7 == 0 {
            yield_now().await;
        }
    }
}

/// Writes `total` pattern bytes in small writes of cycling sizes, yielding
/// or sleeping now and then so reads interleave with them.
async fn write_small_pieces<S: Stream>(stream: &Rc<S>, total: usize) {
    let mut off = 0usize;
    let mut k = 0usize;
    while off < total {
        let len = (1 + k % 97).min(total - off);
        let piece: Vec<u8> = (off..off + len).map(pattern).collect();
        let st = stream.clone();
        let (res, _) = bounded("a write", async move { st.write_all(piece).await }).await;
        res.unwrap();
        off += len;
        k += 1;
        match k % 50 {
            0 => sleep(Duration::from_millis(1)).await,
            n if n % 5 == 0 => yield_now().await,
            _ => {}
        }
    }
    stream.shutdown_write();
}

const READ_SIZES: [usize; 9] = [1, 2, 3, 5, 8, 13, 64, 1000, 4096];

/// Writes `total` bytes with one `write_all` (filling the socket buffers, so
/// the writer waits for writability again and again) while the reader takes
/// 64 KiB at a time with pauses; returns what was read.
async fn bulk_against_slow_reader<S: Stream>(writer: S, reader: Rc<S>, total: usize) -> usize {
    let w = spawn(async move {
        let data: Vec<u8> = (0..total).map(pattern).collect();
        let (res, _) = writer.write_all(data).await;
        res.unwrap();
        writer.shutdown_write();
        writer
    });
    let mut got = 0usize;
    let mut reads = 0usize;
    loop {
        let st = reader.clone();
        let (res, buf) = bounded("a read (or the writer)", async move {
            st.read(Vec::with_capacity(64 * 1024)).await
        })
        .await;
        let n = res.unwrap();
        if n == 0 {
            break;
        }
        for (j, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, pattern(got + j), "byte {}", got + j);
        }
        got += n;
        reads += 1;
        if reads % 16 == 0 {
            sleep(Duration::from_millis(2)).await;
        }
    }
    drop(timeout(STEP, w).await.expect("the writer hung").unwrap());
    got
}

#[ringloop::test]
fn tcp_small_writes_interleaved_with_partial_reads(lp: &EventLoop) {
    lp.run_until_complete(async {
        const TOTAL: usize = 100_000;
        let (client, server) = tcp_pair().await;
        let (client, server) = (Rc::new(client), Rc::new(server));
        let writer = spawn(async move {
            write_small_pieces(&client, TOTAL).await;
            client
        });
        let got = read_to_end_in_sizes(&server, &READ_SIZES).await;
        assert_eq!(got.len(), TOTAL);
        assert!(got.iter().enumerate().all(|(i, b)| *b == pattern(i)));
        drop(writer.await.unwrap());
    })
    .unwrap();
}

#[ringloop::test]
fn unix_small_writes_interleaved_with_partial_reads(lp: &EventLoop) {
    lp.run_until_complete(async {
        const TOTAL: usize = 100_000;
        let (a, b) = UnixStream::pair().unwrap();
        let (a, b) = (Rc::new(a), Rc::new(b));
        let writer = spawn(async move {
            write_small_pieces(&a, TOTAL).await;
            a
        });
        let got = read_to_end_in_sizes(&b, &READ_SIZES).await;
        assert_eq!(got.len(), TOTAL);
        assert!(got.iter().enumerate().all(|(i, b)| *b == pattern(i)));
        drop(writer.await.unwrap());
    })
    .unwrap();
}

#[ringloop::test]
fn tcp_writer_fills_the_buffer_and_waits_for_writability(lp: &EventLoop) {
    lp.run_until_complete(async {
        const TOTAL: usize = 8 << 20;
        let (client, server) = tcp_pair().await;
        assert_eq!(bulk_against_slow_reader(client, Rc::new(server), TOTAL).await, TOTAL);
    })
    .unwrap();
}

#[ringloop::test]
fn unix_writer_fills_the_buffer_and_waits_for_writability(lp: &EventLoop) {
    lp.run_until_complete(async {
        const TOTAL: usize = 4 << 20;
        let (a, b) = UnixStream::pair().unwrap();
        assert_eq!(bulk_against_slow_reader(a, Rc::new(b), TOTAL).await, TOTAL);
    })
    .unwrap();
}

#[ringloop::test]
fn echo_ping_pong_with_requests_shorter_than_the_buffer(lp: &EventLoop) {
    // The benchmark's pattern: every read is short, so the fallback
    // backend waits before each next read instead of trying it.
    lp.run_until_complete(async {
        let (client, server) = tcp_pair().await;
        let echo = spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            loop {
                let (res, b) = server.read(buf).await;
                let n = res.unwrap();
                if n == 0 {
                    return;
                }
                let (res, b) = server.write_all(b).await;
                res.unwrap();
                buf = b;
                buf.clear();
            }
        });
        let client = Rc::new(client);
        for round in 0..500usize {
            let msg: Vec<u8> = (0..1 + round % 200).map(|i| pattern(i + round)).collect();
            let c = client.clone();
            let len = msg.len();
            let (res, got) = bounded("an echo round", async move {
                let (res, _) = c.write_all(msg).await;
                res.unwrap();
                c.read_exact(Vec::new(), len).await
            })
            .await;
            res.unwrap();
            assert_eq!(got, (0..len).map(|i| pattern(i + round)).collect::<Vec<u8>>());
        }
        client.shutdown(Shutdown::Write).unwrap();
        timeout(STEP, echo).await.expect("echo task hung").unwrap();
    })
    .unwrap();
}

#[ringloop::test]
fn tcp_short_read_then_end_of_stream_already_reported(lp: &EventLoop) {
    // Data and FIN arrive together and are reported before the first
    // read: that read is short, yet the stream is still readable (EOF).
    lp.run_until_complete(async {
        let (ours, mut peer) = tcp_with_std_peer().await;
        let ours = Rc::new(ours);
        peer.write_all(b"abc").unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        sleep(Duration::from_millis(50)).await;
        let (res, buf) = read_once(&ours, 1024).await;
        assert_eq!(res.unwrap(), 3);
        assert_eq!(buf, b"abc");
        let (res, _) = read_once(&ours, 1024).await;
        assert_eq!(res.unwrap(), 0, "end of stream after a short read");
    })
    .unwrap();
}

#[ringloop::test]
fn unix_short_read_then_end_of_stream_already_reported(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let ours = Rc::new(UnixStream::from_std(ours).unwrap());
        peer.write_all(b"abc").unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        sleep(Duration::from_millis(50)).await;
        let (res, buf) = read_once(&ours, 1024).await;
        assert_eq!(res.unwrap(), 3);
        assert_eq!(buf, b"abc");
        let (res, _) = read_once(&ours, 1024).await;
        assert_eq!(res.unwrap(), 0, "end of stream after a short read");
    })
    .unwrap();
}

#[ringloop::test]
fn tcp_read_stopped_at_an_urgent_mark_is_not_taken_as_drained(lp: &EventLoop) {
    // A TCP read stops before urgent (out-of-band) data with bytes still
    // queued behind it; the urgent byte itself is skipped (not inline).
    lp.run_until_complete(async {
        let (ours, mut peer) = tcp_with_std_peer().await;
        let ours = Rc::new(ours);
        peer.write_all(b"abc").unwrap();
        // SAFETY: sending one byte from a static buffer on an open socket.
        let n = unsafe { libc::send(peer.as_raw_fd(), b"!".as_ptr().cast(), 1, libc::MSG_OOB) };
        assert_eq!(n, 1);
        peer.write_all(b"def").unwrap();
        sleep(Duration::from_millis(50)).await;
        let got = read_at_least(&ours, 6).await;
        assert_eq!(got, b"abcdef");
        drop(peer);
        let (res, _) = read_once(&ours, 16).await;
        assert_eq!(res.unwrap(), 0);
    })
    .unwrap();
}

#[ringloop::test]
fn unix_read_stopped_by_passed_fds_is_not_taken_as_drained(lp: &EventLoop) {
    // The kernel ends a Unix stream read after a message that carried
    // file descriptors (discarded here: no control buffer), with later
    // bytes still queued.
    lp.run_until_complete(async {
        let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let ours = Rc::new(UnixStream::from_std(ours).unwrap());
        // Let the loop process the registration's report first.
        sleep(Duration::from_millis(20)).await;
        peer.write_all(b"hello").unwrap();
        let passed = std::fs::File::open("/dev/null").unwrap();
        send_with_fd(&peer, b"fd!", passed.as_raw_fd());
        peer.write_all(b"world").unwrap();
        sleep(Duration::from_millis(50)).await;
        let got = read_at_least(&ours, 13).await;
        assert_eq!(got, b"hellofd!world");
        drop(peer);
        let (res, _) = read_once(&ours, 16).await;
        assert_eq!(res.unwrap(), 0);
    })
    .unwrap();
}

/// `sendmsg` of `data` with one `SCM_RIGHTS` file descriptor attached.
fn send_with_fd(sock: &std::os::unix::net::UnixStream, data: &[u8], fd: i32) {
    #[repr(C)]
    union Cmsg {
        buf: [u8; 64],
        _align: libc::cmsghdr,
    }
    let mut cmsg = Cmsg { buf: [0; 64] };
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the fields set below point at
    // live locals.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: computing a size, no memory access.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    assert!(space <= 64);
    // SAFETY: `cmsg` is a 64-byte buffer aligned for `cmsghdr`.
    msg.msg_control = unsafe { cmsg.buf.as_mut_ptr() }.cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` has a control buffer of `space` bytes, enough for one
    // header carrying one int; the CMSG macros stay inside it.
    unsafe {
        let hdr = libc::CMSG_FIRSTHDR(&msg);
        (*hdr).cmsg_level = libc::SOL_SOCKET;
        (*hdr).cmsg_type = libc::SCM_RIGHTS;
        (*hdr).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(hdr).cast::<i32>(), fd);
    }
    // SAFETY: `msg` points at live locals (iovec over `data`, the control
    // buffer) for the duration of the call.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, 0) };
    assert_eq!(n, data.len() as isize, "sendmsg: {}", std::io::Error::last_os_error());
}
