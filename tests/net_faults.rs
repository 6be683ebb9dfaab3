//! Bad input and faults on TCP, on both backends: refused and reset
//! connections, closed peers (without SIGPIPE), half-close, zero-length
//! buffers, sockets that are not what they seem, fd exhaustion, 10 000
//! operations in flight on a 256-entry ring, concurrent waiters on one
//! socket, invalid addresses and unresolvable names.
//!
//! Tests that change process-wide state (RLIMIT_NOFILE, the SIGPIPE
//! disposition) or need thousands of fds run their body in a child process:
//! the test binary re-runs itself with `--ignored --exact <helper>`.

mod common;

use ringloop::{AsyncReadOwned, AsyncWriteOwned};
use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::net::*;
use common::{child_loop, open_fds, run_child};
use ringloop::buf::IoBuf;
use ringloop::net::{TcpListener, TcpStream};
use ringloop::{DriverChoice, EventLoop, sleep, spawn, timeout, yield_now};

/// A generous bound for things that must not hang (tests fail instead).
const NO_HANG: Duration = Duration::from_secs(20);

/// Reads until EOF or an error; returns the bytes and the error, if any.
async fn read_to_end_or_error(s: &TcpStream) -> (Vec<u8>, Option<std::io::Error>) {
    let mut got = Vec::new();
    loop {
        let (res, buf) = s.read(Vec::with_capacity(4096)).await;
        match res {
            Ok(0) => return (got, None),
            Ok(_) => got.extend_from_slice(&buf),
            Err(e) => return (got, Some(e)),
        }
    }
}

/// A connected pair: (ringloop client, std server side).
async fn pair_with_std_peer() -> (TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect_addr(l.local_addr().unwrap()).await.unwrap();
    // The kernel completed the handshake: accept returns at once.
    let (peer, _) = l.accept().unwrap();
    (client, peer)
}

/// Sends an RST: SO_LINGER with a zero timeout, then close.
fn reset(peer: std::net::TcpStream) {
    socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO)).unwrap();
    drop(peer);
}

#[ringloop::test]
fn connecting_to_a_port_nobody_listens_on_is_connection_refused(lp: &EventLoop) {
    lp.run_until_complete(async {
        // A port nobody listens on (and nobody else can take meanwhile).
        let (_held, addr) = common::refusing_port();
        let e = TcpStream::connect_addr(addr).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e:?}");
        // Through name resolution (blocking pool) too.
        let e = TcpStream::connect(format!("127.0.0.1:{}", addr.port()))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e:?}");
        // "localhost" may resolve to ::1 and 127.0.0.1: every address is
        // tried and the last error is returned.
        let e = TcpStream::connect(("localhost", addr.port())).await.unwrap_err();
        // (On a host without IPv6, ::1 may fail differently if tried last.)
        assert!(
            e.kind() == ErrorKind::ConnectionRefused
                || e.kind() == ErrorKind::AddrNotAvailable
                || e.raw_os_error() == Some(libc::EAFNOSUPPORT),
            "{e:?}"
        );
        // The loop still works: a real listener accepts.
        let listener = loopback_listener();
        let c = TcpStream::connect_addr(listener.local_addr().unwrap()).await.unwrap();
        let (s, _) = listener.accept().await.unwrap();
        assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
    })
    .unwrap();
}

#[ringloop::test]
fn a_peer_reset_fails_the_pending_read_with_connection_reset(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (client, peer) = pair_with_std_peer().await;
        let client = Rc::new(client);
        (&peer).write_all(b"partial").unwrap();
        let in_second_read = Rc::new(Cell::new(false));
        let reader = spawn({
            let (client, flag) = (client.clone(), in_second_read.clone());
            async move {
                let (r, got) = client.read_exact(Vec::new(), 7).await;
                r.unwrap();
                assert_eq!(got, b"partial");
                flag.set(true);
                // In flight (io_uring) / waiting for readiness when the RST lands.
                client.read(Vec::with_capacity(64)).await.0
            }
        });
        while !in_second_read.get() {
            yield_now().await;
        }
        // Let the read reach the kernel (one more loop iteration submits it).
        sleep(Duration::from_millis(5)).await;
        reset(peer);
        let res = timeout(NO_HANG, reader).await.expect("read hung after RST").unwrap();
        let e = res.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e:?}");
        // Later writes fail too (the error was consumed: EPIPE), without a panic.
        let (r, _) = client.write_all(b"after reset".as_slice()).await;
        let e = r.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
            "{e:?}"
        );
    })
    .unwrap();
}

#[ringloop::test]
fn a_peer_reset_with_unread_data_delivers_a_prefix_then_connection_reset(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (client, peer) = pair_with_std_peer().await;
        let mut sent = vec![0u8; 48 * 1024];
        XorShift::new(7).fill(&mut sent);
        (&peer).write_all(&sent).unwrap();
        reset(peer);
        let (got, err) = timeout(NO_HANG, read_to_end_or_error(&client)).await.unwrap();
        assert!(
            sent.starts_with(&got),
            "received bytes are not a prefix of the sent ones"
        );
        let e = err.expect("a reset connection must end in an error, not EOF");
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e:?}");
    })
    .unwrap();
}

#[ringloop::test]
fn a_write_blocked_on_a_full_buffer_fails_when_the_peer_resets(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (client, peer) = pair_with_std_peer().await;
        let client = Rc::new(client);
        // The peer never reads: 64 MiB cannot fit in the socket buffers
        // (a few MiB with default sysctls), so the write is in flight
        // when the RST arrives.
        let writer = spawn({
            let client = client.clone();
            async move { client.write_all(vec![0x5a; 64 * 1024 * 1024]).await.0 }
        });
        sleep(Duration::from_millis(50)).await;
        assert!(!writer.is_done(), "64 MiB fit in the socket buffers?");
        reset(peer);
        let res = timeout(NO_HANG, writer).await.expect("write hung after RST").unwrap();
        let e = res.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "{e:?}"
        );
    })
    .unwrap();
}

#[ringloop::test]
fn writing_to_a_closed_peer_is_an_error_and_sigpipe_does_not_kill_the_process(lp: &EventLoop) {
    // Rust binaries ignore SIGPIPE from the start, which would hide a
    // missing MSG_NOSIGNAL: the child restores the default action first.
    let out = run_child(lp, "child_write_to_closed_peer_with_default_sigpipe", &[]);
    assert!(out.contains("SURVIVED"), "{out}");
}

#[ringloop::test]
fn half_close_lets_each_side_read_the_rest(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = loopback_listener();
        let addr = listener.local_addr().unwrap();
        let mut request = vec![0u8; 1024 * 1024 + 3];
        XorShift::new(11).fill(&mut request);
        let mut reply = vec![0u8; 512 * 1024 + 5];
        XorShift::new(12).fill(&mut reply);
        let server = spawn({
            let reply = reply.clone();
            async move {
                let (s, _) = listener.accept().await.unwrap();
                // Read everything until the client's shutdown(Write)...
                let (got, err) = read_to_end_or_error(&s).await;
                assert!(err.is_none(), "{err:?}");
                // ...EOF is sticky...
                for _ in 0..3 {
                    assert_eq!(s.read(Vec::with_capacity(16)).await.0.unwrap(), 0);
                }
                // ...and we can still write the whole reply, then close.
                let (r, _) = s.write_all(reply).await;
                r.unwrap();
                got
            }
        });
        let (rd, wr) = TcpStream::connect_addr(addr).await.unwrap().into_split();
        let (r, _) = wr.write_all(request.clone()).await;
        r.unwrap();
        wr.shutdown().unwrap();
        // Writing after our own shutdown(Write) is an error.
        let (r, _) = wr.write(b"late".as_slice()).await;
        assert_eq!(r.unwrap_err().kind(), ErrorKind::BrokenPipe);
        let (r, got) = rd.read_exact(Vec::new(), reply.len()).await;
        r.unwrap();
        assert!(got == reply, "reply corrupted");
        // The server closed after the reply: EOF.
        assert_eq!(rd.read(Vec::with_capacity(16)).await.0.unwrap(), 0);
        let received = timeout(NO_HANG, server).await.unwrap().unwrap();
        assert!(received == request, "request corrupted");
    })
    .unwrap();
}

#[ringloop::test]
fn zero_length_reads_and_writes_complete_at_once_without_consuming_data(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (client, peer) = pair_with_std_peer().await;
        // Nothing to read yet: a zero-capacity read still answers at once.
        let (r, b) = timeout(NO_HANG, client.read(Vec::new())).await.unwrap();
        assert_eq!(r.unwrap(), 0);
        assert!(b.is_empty());
        (&peer).write_all(b"abc").unwrap();
        // A zero-length window of a real buffer: 0, data left in place.
        let buf = b"xyz".to_vec();
        let (r, s) = client.read(buf.slice(3..3)).await;
        assert_eq!(r.unwrap(), 0);
        assert_eq!(s.into_inner(), b"xyz");
        let (r, got) = client.read_exact(Vec::new(), 3).await;
        r.unwrap();
        assert_eq!(got, b"abc");
        // Zero-length writes send nothing and succeed.
        assert_eq!(client.write(Vec::new()).await.0.unwrap(), 0);
        assert_eq!(client.write(b"".as_slice()).await.0.unwrap(), 0);
        client.write_all(Vec::new()).await.0.unwrap();
        client.write_all(b"!".as_slice()).await.0.unwrap();
        let mut one = [0u8; 1];
        (&peer).read_exact(&mut one).unwrap();
        assert_eq!(&one, b"!");
        // After EOF a zero-length read is still 0 (and not an error).
        drop(peer);
        assert_eq!(client.read(Vec::with_capacity(8)).await.0.unwrap(), 0);
        assert_eq!(client.read(Vec::new()).await.0.unwrap(), 0);
    })
    .unwrap();
}

#[ringloop::test]
fn sockets_in_the_wrong_state_give_errors_not_hangs(lp: &EventLoop) {
    lp.run_until_complete(async {
        // A socket that was never connected.
        let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let s = TcpStream::from_std(raw.into()).unwrap();
        let e = timeout(NO_HANG, s.read(Vec::with_capacity(8)))
            .await
            .unwrap()
            .0
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotConnected, "{e:?}");
        let e = timeout(NO_HANG, s.write(b"x".as_slice())).await.unwrap().0.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::NotConnected),
            "{e:?}"
        );
        assert_eq!(s.peer_addr().unwrap_err().kind(), ErrorKind::NotConnected);

        // A bound socket that is not listening: accept is EINVAL.
        let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        raw.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
        let l = TcpListener::from_std(raw.into()).unwrap();
        let e = timeout(NO_HANG, l.accept()).await.unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e:?}");

        // Our own stream after shutdown(Both): reads see EOF, writes EPIPE.
        let (client, _peer) = pair_with_std_peer().await;
        client.shutdown(Shutdown::Both).unwrap();
        assert_eq!(
            timeout(NO_HANG, client.read(Vec::with_capacity(8)))
                .await
                .unwrap()
                .0
                .unwrap(),
            0
        );
        let e = client.write(b"x".as_slice()).await.0.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BrokenPipe, "{e:?}");
        // A second shutdown of a shut-down socket is an error or a no-op, never a panic.
        let _ = client.shutdown(Shutdown::Both);
    })
    .unwrap();
}

/// Without fixed files: a socket installed in io_uring's file table keeps
/// being reached by io_uring operations even after its fd number is made
/// to name another file (the table holds the socket itself); only the
/// plain-fd path sees the replacement (ARCHITECTURE.md, "Fixed files").
#[test]
fn an_fd_replaced_behind_the_streams_back_gives_enotsock_errors() {
    for choice in [DriverChoice::Uring, DriverChoice::Fallback] {
        if common::build(choice, false).is_none() {
            continue;
        }
        let lp = EventLoop::builder().driver(choice).fixed_files(0).build().unwrap();
        fd_replaced(&lp);
    }
}

fn fd_replaced(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (client, _peer) = pair_with_std_peer().await;
        let devnull = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsRawFd;
        // dup2 atomically makes the stream's fd number refer to /dev/null:
        // only the kind of file changes, which is what this test is about.
        // (Closing the stream's fd instead would break I/O safety: the
        // number could be reused and closed twice.)
        // SAFETY: no op of the stream is in flight; the number stays owned by the stream (closed once).
        let rc = unsafe { libc::dup2(devnull.as_raw_fd(), client.as_raw_fd()) };
        assert!(rc >= 0, "dup2: {}", std::io::Error::last_os_error());
        let e = timeout(NO_HANG, client.read(Vec::with_capacity(8)))
            .await
            .unwrap()
            .0
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTSOCK), "{e:?}");
        let e = timeout(NO_HANG, client.write(b"x".as_slice()))
            .await
            .unwrap()
            .0
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTSOCK), "{e:?}");
        assert_eq!(client.peer_addr().unwrap_err().raw_os_error(), Some(libc::ENOTSOCK));
        assert!(client.shutdown(Shutdown::Both).is_err());
        drop(client);
        // The loop is fine afterwards.
        let (c2, mut p2) = pair_with_std_peer().await;
        c2.write_all(b"ok".as_slice()).await.0.unwrap();
        let mut two = [0u8; 2];
        p2.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"ok");
    })
    .unwrap();
}

#[ringloop::test]
fn accept_under_fd_exhaustion_is_emfile_and_the_listener_recovers(lp: &EventLoop) {
    let out = run_child(lp, "child_accept_under_fd_exhaustion", &[]);
    assert!(out.contains("RECOVERED"), "{out}");
}

#[ringloop::test]
fn ten_thousand_operations_in_flight_on_a_256_entry_ring_all_complete(lp: &EventLoop) {
    let out = run_child(lp, "child_ten_thousand_ops_on_a_small_ring", &[]);
    assert!(out.contains("ALL COMPLETE"), "{out}");
}

#[ringloop::test]
fn concurrent_accepts_on_one_listener_all_complete(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = Rc::new(loopback_listener());
        let addr = listener.local_addr().unwrap();
        let acceptors: Vec<_> = (0..8)
            .map(|_| {
                let l = listener.clone();
                spawn(async move { l.accept().await.map(|(s, _)| s) })
            })
            .collect();
        // Let every acceptor start waiting.
        for _ in 0..3 {
            yield_now().await;
        }
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(TcpStream::connect_addr(addr).await.unwrap());
        }
        for a in acceptors {
            timeout(NO_HANG, a)
                .await
                .expect("an acceptor was never woken")
                .unwrap()
                .unwrap();
        }
    })
    .unwrap();
}

#[ringloop::test]
fn concurrent_reads_on_one_stream_all_complete(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (client, peer) = pair_with_std_peer().await;
        let client = Rc::new(client);
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let c = client.clone();
                spawn(async move { c.read(Vec::with_capacity(1)).await })
            })
            .collect();
        for _ in 0..3 {
            yield_now().await;
        }
        (&peer).write_all(b"abcd").unwrap();
        let mut got = Vec::new();
        for r in readers {
            let (res, buf) = timeout(NO_HANG, r).await.expect("a reader was never woken").unwrap();
            assert_eq!(res.unwrap(), 1);
            got.extend_from_slice(&buf);
        }
        got.sort();
        assert_eq!(got, b"abcd");
    })
    .unwrap();
}

#[ringloop::test]
fn a_pending_connect_woken_by_a_sibling_future_does_not_report_success_early(lp: &EventLoop) {
    lp.run_until_complete(async {
        // A listener with backlog 0 that never accepts: once its accept
        // queue is full, new SYNs are dropped and connects stay pending.
        let listener = TcpListener::bind_with("127.0.0.1:0".parse().unwrap(), false, 0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        loop {
            match timeout(Duration::from_millis(200), TcpStream::connect_addr(addr)).await {
                Ok(c) => {
                    let c = c.unwrap();
                    // A connect that reports success must be connected.
                    let peer = c.peer_addr();
                    assert!(peer.is_ok(), "connect succeeded but peer_addr() = {peer:?}");
                    queued.push(c);
                }
                Err(_) => break,
            }
            assert!(queued.len() < 64, "the accept queue never filled up");
        }
        // This connect stays pending; the sleep beside it wakes the task
        // (and so re-polls the connect) long before the SYN is retried.
        let (res, ()) = futures_util::future::join(
            timeout(Duration::from_millis(400), TcpStream::connect_addr(addr)),
            sleep(Duration::from_millis(20)),
        )
        .await;
        match res {
            Err(_elapsed) => {}
            Ok(Ok(s)) => panic!(
                "connect reported success, peer_addr = {:?}, {} queued",
                s.peer_addr(),
                queued.len()
            ),
            Ok(Err(e)) => panic!("connect failed: {e}"),
        }
        drop(listener);
    })
    .unwrap();
}

#[ringloop::test]
fn invalid_addresses_are_errors(lp: &EventLoop) {
    lp.run_until_complete(async {
        // Port 0 is not a connectable port.
        let e = TcpStream::connect_addr("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap_err();
        eprintln!("127.0.0.1:0 -> {e}");
        if cfg!(target_os = "linux") {
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e:?}");
        }
        // TCP to multicast / broadcast: refused by the routing layer
        // before any packet is sent.
        for a in ["224.0.0.1:80", "255.255.255.255:80"] {
            let e = TcpStream::connect_addr(a.parse().unwrap()).await.unwrap_err();
            eprintln!("{a} -> {e}");
            if cfg!(target_os = "linux") {
                assert_eq!(e.kind(), ErrorKind::NetworkUnreachable, "{a}: {e:?}");
            }
        }
        // Binding to an address this host does not have (TEST-NET-1).
        let e = TcpListener::bind("192.0.2.1:0".parse().unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrNotAvailable, "{e:?}");
        // Binding to a port someone listens on.
        let l = loopback_listener();
        let e = TcpListener::bind(l.local_addr().unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e:?}");
        // Malformed "host:port" strings never reach the resolver.
        for a in ["127.0.0.1", "localhost:99999", "localhost:http", ""] {
            let e = TcpStream::connect(a).await.unwrap_err();
            eprintln!("{a:?} -> {e}");
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{a:?}: {e:?}");
        }
    })
    .unwrap();
}

#[ringloop::test]
fn unresolvable_host_names_are_errors(lp: &EventLoop) {
    lp.run_until_complete(async {
        // Names that glibc rejects without sending a DNS query (an empty
        // label, a label over 63 bytes, a character hosts cannot have):
        // this test must not depend on, or talk to, a DNS server.
        let long_label = format!("{}.invalid:80", "a".repeat(64));
        for name in ["bad..name.invalid:80", long_label.as_str(), "bad_name!.invalid:80"] {
            let res = timeout(NO_HANG, TcpStream::connect(name.to_string())).await.unwrap();
            let e = res.unwrap_err();
            eprintln!("{name} -> {e}");
            assert!(!e.to_string().is_empty());
        }
    })
    .unwrap();
}

#[ringloop::test]
fn read_exact_of_an_unallocatable_length_is_an_error_not_an_abort(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (client, peer) = pair_with_std_peer().await;
        (&peer).write_all(b"later").unwrap();
        for len in [usize::MAX, 1 << 60] {
            let mut mine = Vec::with_capacity(16);
            mine.extend_from_slice(b"kept");
            let (r, buf) = client.read_exact(mine, len).await;
            let e = r.expect_err("a read_exact that cannot allocate succeeded");
            assert_eq!(e.kind(), ErrorKind::OutOfMemory, "{e}");
            assert_eq!(buf, b"kept", "the buffer comes back as it was");
        }
        // Nothing was consumed: the stream still works.
        let (r, got) = client.read_exact(Vec::new(), 5).await;
        r.unwrap();
        assert_eq!(got, b"later");

        let (a, b) = ringloop::net::UnixStream::pair().unwrap();
        let (r, buf) = a.read_exact(Vec::new(), usize::MAX - 1).await;
        assert_eq!(r.unwrap_err().kind(), ErrorKind::OutOfMemory);
        assert!(buf.is_empty());
        drop(b);
    })
    .unwrap();
}

// ---------------------------------------------------------------------------
// Child-process helpers (run by the tests above, ignored when run directly).

#[test]
#[ignore = "helper: run in a child process by writing_to_a_closed_peer_is_an_error_and_sigpipe_does_not_kill_the_process"]
fn child_write_to_closed_peer_with_default_sigpipe() {
    let Some(lp) = child_loop(EventLoop::builder()) else {
        return;
    };
    // SAFETY: restores the default SIGPIPE action (terminate) in this child
    // process, which runs only this test; no handler code is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    lp.run_until_complete(async {
        for how in ["close", "reset"] {
            let (client, peer) = pair_with_std_peer().await;
            if how == "reset" {
                reset(peer);
            } else {
                drop(peer);
            }
            // The first write after a FIN may still succeed (the peer answers
            // it with an RST); keep writing until the error.
            let mut last = Ok(());
            for _ in 0..100 {
                let (r, _) = client.write_all(vec![1u8; 64 * 1024]).await;
                last = r;
                if last.is_err() {
                    break;
                }
                sleep(Duration::from_millis(1)).await;
            }
            let e = last.unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
                "{how}: {e:?}"
            );
            // And once more on the failed socket, through a split write half.
            let (_rd, wr) = client.into_split();
            let e = wr.write(b"x".as_slice()).await.0.unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
                "{how}: {e:?}"
            );
        }
    })
    .unwrap();
    println!("SURVIVED");
}

#[test]
#[ignore = "helper: run in a child process by accept_under_fd_exhaustion_is_emfile_and_the_listener_recovers"]
fn child_accept_under_fd_exhaustion() {
    let Some(lp) = child_loop(EventLoop::builder()) else {
        return;
    };
    lp.run_until_complete(async {
        let listener = loopback_listener();
        let addr = listener.local_addr().unwrap();
        // Client sockets are created now, so connecting them later needs no fd.
        let clients: Vec<socket2::Socket> = (0..3)
            .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
            .collect();
        let (soft, hard) = nofile_limit();
        let limit = open_fds() as u64 + 16;
        set_nofile_soft(limit).unwrap();
        eprintln!("RLIMIT_NOFILE {soft}/{hard} -> {limit}");
        let mut fillers = Vec::new();
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(f) => fillers.push(f),
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
                Err(e) => panic!("unexpected error while filling fds: {e}"),
            }
        }
        eprintln!("filled {} fds", fillers.len());
        for c in &clients {
            // Loopback handshakes complete in the kernel, accepted or not.
            c.connect(&addr.into()).unwrap();
        }
        // Every fd is taken: accept must fail with EMFILE, repeatedly.
        for _ in 0..3 {
            let e = timeout(NO_HANG, listener.accept())
                .await
                .expect("accept hung")
                .unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e:?}");
        }
        // One fd free: exactly one connection is accepted, then EMFILE again.
        drop(fillers.pop());
        let (s1, peer1) = timeout(NO_HANG, listener.accept()).await.unwrap().unwrap();
        let e = timeout(NO_HANG, listener.accept()).await.unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e:?}");
        // All fds back: the connections that waited are served, in order.
        drop(fillers);
        set_nofile_soft(soft).unwrap();
        let (s2, peer2) = timeout(NO_HANG, listener.accept()).await.unwrap().unwrap();
        let (s3, peer3) = timeout(NO_HANG, listener.accept()).await.unwrap().unwrap();
        for (i, (s, peer)) in [(s1, peer1), (s2, peer2), (s3, peer3)].into_iter().enumerate() {
            let c = &clients[i];
            assert_eq!(peer, c.local_addr().unwrap().as_socket().unwrap());
            let msg = format!("client {i}");
            (&*c).write_all(msg.as_bytes()).unwrap();
            let (r, got) = s.read_exact(Vec::new(), msg.len()).await;
            r.unwrap();
            assert_eq!(got, msg.as_bytes());
        }
        // And a brand-new connection works end to end.
        let server = spawn(echo_server(listener));
        let c = TcpStream::connect_addr(addr).await.unwrap();
        c.write_all(b"ping".as_slice()).await.0.unwrap();
        let (r, got) = c.read_exact(Vec::new(), 4).await;
        r.unwrap();
        assert_eq!(got, b"ping");
        server.cancel();
    })
    .unwrap();
    println!("RECOVERED");
}

/// Connections (two sockets each) for the 10 000-operation test.
const TEN_K_CONNS: usize = 5_000;

#[test]
#[ignore = "helper: run in a child process by ten_thousand_operations_in_flight_on_a_256_entry_ring_all_complete"]
fn child_ten_thousand_ops_on_a_small_ring() {
    let Some(lp) = child_loop(EventLoop::builder().ring_entries(256)) else {
        return;
    };
    let need = (2 * TEN_K_CONNS + 64) as u64;
    let have = raise_nofile_to(need);
    assert!(have >= need, "RLIMIT_NOFILE hard limit {have} < {need} needed");
    let t0 = Instant::now();
    lp.run_until_complete(async move {
        let listener = loopback_listener();
        let addr = listener.local_addr().unwrap();
        // Connect in concurrent batches: few loop iterations, which keeps
        // the set-up cheap on poll(2), where each wait scans every fd.
        let mut socks = Vec::with_capacity(2 * TEN_K_CONNS);
        for _ in 0..TEN_K_CONNS / 250 {
            let connects: Vec<_> = (0..250).map(|_| spawn(TcpStream::connect_addr(addr))).collect();
            let mut accepted = std::collections::HashMap::new();
            for _ in 0..250 {
                let (s, peer) = listener.accept().await.unwrap();
                accepted.insert(peer, s);
            }
            for c in connects {
                let c = c.await.unwrap().unwrap();
                let s = accepted.remove(&c.local_addr().unwrap()).expect("accepted the client");
                socks.push(Rc::new(c));
                socks.push(Rc::new(s));
            }
        }
        eprintln!("{} sockets connected in {:?}", socks.len(), t0.elapsed());
        let tag = |i: usize| format!("socket {i:>6} says hi").into_bytes();
        // 10 000 reads in flight: one per socket, all submitted before any
        // data exists (the SQ holds 256, the rest go through SQ-full
        // submission and the backlog).
        let started = Rc::new(Cell::new(0usize));
        let readers: Vec<_> = socks
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (s, started) = (s.clone(), started.clone());
                spawn(async move {
                    started.set(started.get() + 1);
                    let (r, got) = s.read_exact(Vec::new(), tag(0).len()).await;
                    r.map(|()| (i, got))
                })
            })
            .collect();
        while started.get() < readers.len() {
            yield_now().await;
        }
        // Every peer's read is pending now; 10 000 writes at once complete
        // them all in a burst far larger than the 512-entry CQ.
        let writers: Vec<_> = socks
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.clone();
                // Socket 2k talks to 2k+1 and vice versa.
                let msg = tag(i ^ 1);
                spawn(async move { s.write_all(msg).await.0 })
            })
            .collect();
        for w in writers {
            timeout(NO_HANG, w).await.expect("a write was lost").unwrap().unwrap();
        }
        let mut done = 0;
        for r in readers {
            let (i, got) = timeout(NO_HANG, r).await.expect("a read was lost").unwrap().unwrap();
            assert_eq!(got, tag(i), "socket {i} got someone else's bytes");
            done += 1;
        }
        assert_eq!(done, 2 * TEN_K_CONNS);
        // The loop still works.
        let server = spawn(echo_server(listener));
        let c = TcpStream::connect_addr(addr).await.unwrap();
        c.write_all(b"still here".as_slice()).await.0.unwrap();
        assert_eq!(c.read_exact(Vec::new(), 10).await.1, b"still here");
        server.cancel();
    })
    .unwrap();
    eprintln!("10 000 reads + 10 000 writes in {:?}", t0.elapsed());
    println!("ALL COMPLETE");
}
