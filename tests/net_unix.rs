//! Unix domain sockets on both backends.
#![cfg(unix)]

mod common;

use futures_util::StreamExt;
use ringloop::net::{UnixDatagram, UnixListener, UnixStream};
use ringloop::{AsyncReadOwned, AsyncWriteOwned};
use ringloop::{EventLoop, spawn};
use std::io::ErrorKind;
use std::net::Shutdown;
use std::path::PathBuf;

/// A fresh socket path for this test and backend (both backends of a test
/// run at the same time), removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(lp: &EventLoop, name: &str) -> TempPath {
        let p = std::env::temp_dir().join(format!(
            "ringloop-{}-{name}-{}.sock",
            std::process::id(),
            lp.driver_kind()
        ));
        let _ = std::fs::remove_file(&p);
        TempPath(p)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads until end of stream.
async fn read_to_end(s: &UnixStream) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let (r, buf) = s.read(Vec::with_capacity(4096)).await;
        if r.unwrap() == 0 {
            return all;
        }
        all.extend_from_slice(&buf);
    }
}

#[ringloop::test]
fn unix_stream_echo_with_half_close(lp: &EventLoop) {
    let path = TempPath::new(lp, "echo");
    let p = path.0.clone();
    lp.run_until_complete(async move {
        let listener = UnixListener::bind(&p).unwrap();
        assert_eq!(listener.local_addr().unwrap().as_pathname(), Some(p.as_path()));
        let server = spawn(async move {
            let (s, peer) = listener.accept().await.unwrap();
            assert!(peer.is_unnamed(), "a connecting client has no name: {peer:?}");
            // Read everything the client sends (it half-closes), then reply.
            let got = read_to_end(&s).await;
            let (r, _) = s.write_all(got).await;
            r.unwrap();
            s.shutdown(Shutdown::Write).unwrap();
        });
        let c = UnixStream::connect(&p).await.unwrap();
        assert_eq!(c.peer_addr().unwrap().as_pathname(), Some(p.as_path()));
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (r, _) = c.write_all(data.clone()).await;
        r.unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let back = read_to_end(&c).await;
        assert!(back == data, "echoed bytes differ");
        server.await.unwrap();
    })
    .unwrap();
}

#[ringloop::test]
fn unix_stream_pair_split_halves_and_read_exact(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (a, b) = UnixStream::pair().unwrap();
        assert!(a.local_addr().unwrap().is_unnamed());
        let (rd, wr) = b.into_split();
        let echo = spawn(async move {
            let (r, buf) = rd.read_exact(Vec::new(), 11).await;
            r.unwrap();
            let (r, _) = wr.write_all(buf).await;
            r.unwrap();
            wr.shutdown().unwrap();
        });
        let (r, _) = a.write_all(b"hello world".as_slice()).await;
        r.unwrap();
        let (r, got) = a.read_exact(Vec::new(), 11).await;
        r.unwrap();
        assert_eq!(got, b"hello world");
        let (r, _) = a.read_exact(Vec::new(), 1).await;
        assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        echo.await.unwrap();
    })
    .unwrap();
}

#[ringloop::test]
fn unix_readv_writev_round_trip(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, bufs) = a.writev(vec![b"abc".to_vec(), Vec::new(), b"defgh".to_vec()]).await;
        assert_eq!(r.unwrap(), 8);
        assert_eq!(bufs.len(), 3, "the buffers come back");
        let (r, bufs) = b
            .readv(vec![Vec::with_capacity(2), Vec::new(), Vec::with_capacity(100)])
            .await;
        assert_eq!(r.unwrap(), 8);
        assert_eq!(bufs[0], b"ab", "the first buffer is filled first");
        assert!(bufs[1].is_empty(), "a zero-capacity buffer takes nothing");
        assert_eq!(bufs[2], b"cdefgh");
    })
    .unwrap();
}

#[ringloop::test]
fn unix_datagrams_keep_boundaries_and_report_truncation(lp: &EventLoop) {
    let pa = TempPath::new(lp, "dgram-a");
    let pb = TempPath::new(lp, "dgram-b");
    let (pa2, pb2) = (pa.0.clone(), pb.0.clone());
    lp.run_until_complete(async move {
        let a = UnixDatagram::bind(&pa2).unwrap();
        let b = UnixDatagram::bind(&pb2).unwrap();
        let sent = [b"one".to_vec(), vec![7u8; 500], b"three".to_vec()];
        for d in &sent {
            let (r, _) = a.send_to(d.clone(), &pb2).await;
            assert_eq!(r.unwrap(), d.len());
        }
        for d in &sent {
            let (r, got) = b.recv_from(Vec::with_capacity(1024)).await;
            let (n, from) = r.unwrap();
            assert_eq!(n, d.len());
            assert_eq!(&got, d);
            assert_eq!(from.as_pathname(), Some(pa2.as_path()));
        }
        let (r, _) = a.send_to(vec![1u8; 64], &pb2).await;
        r.unwrap();
        let (r, buf) = b.recv_msg(vec![0u8; 8].into_boxed_slice()).await;
        let m = r.unwrap();
        assert!(m.truncated);
        assert_eq!((m.len, &buf[..]), (8, &[1u8; 8][..]));
        // An unbound sender is reported as unnamed.
        let anon = UnixDatagram::unbound().unwrap();
        let (r, _) = anon.send_to(b"anon".as_slice(), &pb2).await;
        r.unwrap();
        let (r, got) = b.recv_msg(Vec::with_capacity(16)).await;
        let m = r.unwrap();
        assert!(!m.truncated);
        assert!(m.addr.is_unnamed(), "{:?}", m.addr);
        assert_eq!(got, b"anon");
        // Sending to a path with no socket is an error, not a hang.
        let (r, _) = a.send_to(b"x".as_slice(), "/nonexistent/ringloop.sock").await;
        assert_eq!(r.unwrap_err().kind(), ErrorKind::NotFound);
    })
    .unwrap();
}

#[ringloop::test]
fn unix_datagram_pair_and_connect(lp: &EventLoop) {
    let pb = TempPath::new(lp, "dgram-conn");
    let pb2 = pb.0.clone();
    lp.run_until_complete(async move {
        let (x, y) = UnixDatagram::pair().unwrap();
        for m in [&b"1"[..], b"22", b"333"] {
            let (r, _) = x.send(m).await;
            r.unwrap();
        }
        for m in [&b"1"[..], b"22", b"333"] {
            let (r, got) = y.recv(Vec::with_capacity(8)).await;
            r.unwrap();
            assert_eq!(got, m);
        }
        let b = UnixDatagram::bind(&pb2).unwrap();
        let a = UnixDatagram::unbound().unwrap();
        a.connect(&pb2).unwrap();
        assert_eq!(a.peer_addr().unwrap().as_pathname(), Some(pb2.as_path()));
        let (r, _) = a.send(b"via connect".as_slice()).await;
        r.unwrap();
        let (r, got) = b.recv(Vec::with_capacity(32)).await;
        r.unwrap();
        assert_eq!(got, b"via connect");
    })
    .unwrap();
}

#[ringloop::test]
fn binding_an_existing_path_is_addr_in_use(lp: &EventLoop) {
    let path = TempPath::new(lp, "inuse");
    let file = TempPath::new(lp, "plainfile");
    std::fs::write(&file.0, b"not a socket").unwrap();
    let (p, f) = (path.0.clone(), file.0.clone());
    lp.run_until_complete(async move {
        let _l = UnixListener::bind(&p).unwrap();
        assert_eq!(UnixListener::bind(&p).unwrap_err().kind(), ErrorKind::AddrInUse);
        assert_eq!(UnixDatagram::bind(&p).unwrap_err().kind(), ErrorKind::AddrInUse);
        // Never deletes a file that is in the way.
        assert_eq!(UnixListener::bind(&f).unwrap_err().kind(), ErrorKind::AddrInUse);
        assert_eq!(std::fs::read(&f).unwrap(), b"not a socket");
        // Bad paths are errors, not panics.
        assert_eq!(UnixListener::bind("").unwrap_err().kind(), ErrorKind::InvalidInput);
        let long = "x".repeat(200);
        assert_eq!(UnixListener::bind(&long).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(
            UnixStream::connect(&long).await.unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    })
    .unwrap();
}

#[ringloop::test]
fn connecting_to_missing_or_stale_paths_fails(lp: &EventLoop) {
    let stale = TempPath::new(lp, "stale");
    let s = stale.0.clone();
    lp.run_until_complete(async move {
        let e = UnixStream::connect("/nonexistent/ringloop.sock").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        // A socket file whose listener is gone.
        drop(UnixListener::bind(&s).unwrap());
        assert!(s.exists(), "dropping a listener leaves its file");
        let e = UnixStream::connect(&s).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    })
    .unwrap();
}

#[ringloop::test]
fn unix_listener_incoming_yields_connections(lp: &EventLoop) {
    let path = TempPath::new(lp, "incoming");
    let p = path.0.clone();
    lp.run_until_complete(async move {
        let listener = UnixListener::bind(&p).unwrap();
        let clients = spawn({
            let p = p.clone();
            async move {
                for i in 0..3u8 {
                    let c = UnixStream::connect(&p).await.unwrap();
                    let (r, _) = c.write_all(vec![i]).await;
                    r.unwrap();
                }
            }
        });
        let mut incoming = listener.incoming();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let s = incoming.next().await.unwrap().unwrap();
            let (r, got) = s.read_exact(Vec::new(), 1).await;
            r.unwrap();
            seen.push(got[0]);
        }
        seen.sort();
        assert_eq!(seen, [0, 1, 2]);
        clients.await.unwrap();
    })
    .unwrap();
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[ringloop::test]
fn abstract_names_work_and_leave_no_file(lp: &EventLoop) {
    let name = format!("ringloop-test-{}-{}", std::process::id(), lp.driver_kind());
    lp.run_until_complete(async move {
        let path = format!("\0{name}");
        let listener = UnixListener::bind(&path).unwrap();
        let local = listener.local_addr().unwrap();
        assert_eq!(local.as_abstract_name(), Some(name.as_bytes()));
        assert!(local.as_pathname().is_none());
        assert!(!std::path::Path::new(&name).exists());
        let server = spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, got) = s.read_exact(Vec::new(), 4).await;
            r.unwrap();
            got
        });
        let c = UnixStream::connect(&path).await.unwrap();
        assert_eq!(c.peer_addr().unwrap().as_abstract_name(), Some(name.as_bytes()));
        let (r, _) = c.write_all(b"ping".as_slice()).await;
        r.unwrap();
        assert_eq!(server.await.unwrap(), b"ping");
        // The listener was dropped with its task, so the name is free
        // again: reuse it for a datagram socket.
        let d = UnixDatagram::bind(&path).unwrap();
        assert_eq!(d.local_addr().unwrap().as_abstract_name(), Some(name.as_bytes()));
        let (r, _) = UnixDatagram::unbound().unwrap().send_to(b"dg".as_slice(), &path).await;
        r.unwrap();
        let (r, got) = d.recv(Vec::with_capacity(8)).await;
        r.unwrap();
        assert_eq!(got, b"dg");
    })
    .unwrap();
}
