//! TCP on both backends.

mod common;

use ringloop::EventLoop;
use ringloop::net::{TcpListener, TcpStream};
use ringloop::spawn;
use ringloop::{AsyncReadOwned, AsyncWriteOwned};
use std::io::ErrorKind;

/// Echoes every accepted connection; ends at the first accept error.
async fn echo_server(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        spawn(common::net::echo_connection(stream)).detach();
    }
}

#[ringloop::test]
fn tcp_echo_round_trips_and_integrity(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn(echo_server(listener)).cancel_on_drop();
        let client = TcpStream::connect(addr).await.unwrap();
        assert_eq!(client.peer_addr().unwrap(), addr);
        client.set_nodelay(true).unwrap();
        assert!(client.nodelay().unwrap());
        for i in 0..100u32 {
            let msg = format!("hello {i}").into_bytes();
            let (r, _) = client.write_all(msg.clone()).await;
            r.unwrap();
            let (r, got) = client.read_exact(Vec::new(), msg.len()).await;
            r.unwrap();
            assert_eq!(got, msg);
        }
        // 4 MiB through one connection, checksummed by comparison.
        let data: Vec<u8> = (0..4 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let (rd, wr) = client.into_split();
        let expect = data.clone();
        let writer = spawn(async move {
            let (r, _) = wr.write_all(data).await;
            r.unwrap();
            wr.shutdown().unwrap();
        });
        let (r, got) = rd.read_exact(Vec::new(), expect.len()).await;
        r.unwrap();
        assert!(got == expect, "echoed bytes differ");
        writer.await.unwrap();
        drop(server);
    })
    .unwrap();
}

#[ringloop::test]
fn connecting_to_a_closed_port_is_connection_refused(lp: &EventLoop) {
    let err = lp
        .run_until_complete(async {
            // A port nobody listens on (and nobody else can take meanwhile).
            let (_held, addr) = common::refusing_port();
            TcpStream::connect(addr).await.unwrap_err()
        })
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

#[ringloop::test]
fn reading_after_the_peer_shut_down_writing_gives_eof(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = spawn(async move {
            let c = TcpStream::connect(addr).await.unwrap();
            let (r, _) = c.write_all(b"last words".as_slice()).await;
            r.unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            // Half-closed: we can still read the reply.
            let (r, got) = c.read_exact(Vec::new(), 2).await;
            r.unwrap();
            got
        });
        let (s, _) = listener.accept().await.unwrap();
        let (r, got) = s.read_exact(Vec::new(), 10).await;
        r.unwrap();
        assert_eq!(got, b"last words");
        let (r, _) = s.read(Vec::with_capacity(8)).await;
        assert_eq!(r.unwrap(), 0, "EOF after the peer's shutdown(Write)");
        let (r, _) = s.write_all(b"ok".as_slice()).await;
        r.unwrap();
        assert_eq!(client.await.unwrap(), b"ok");
    })
    .unwrap();
}

#[ringloop::test]
fn writing_to_a_closed_peer_is_broken_pipe_not_sigpipe(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = listener.accept().await.unwrap();
        drop(s);
        let mut last = Ok(());
        for _ in 0..100 {
            let (r, _) = c.write_all(vec![0u8; 64 * 1024]).await;
            last = r;
            if last.is_err() {
                break;
            }
            ringloop::sleep(std::time::Duration::from_millis(1)).await;
        }
        let e = last.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
            "{e:?}"
        );
    })
    .unwrap();
}

#[ringloop::test]
fn a_read_into_a_zero_length_buffer_returns_zero(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let c = TcpStream::connect(addr).await.unwrap();
        let (_s, _) = listener.accept().await.unwrap();
        let (r, b) = c.read(Vec::new()).await;
        assert_eq!(r.unwrap(), 0);
        assert!(b.is_empty());
    })
    .unwrap();
}

#[ringloop::test]
fn using_a_socket_after_its_loop_closed_is_an_error_not_a_hang(lp: &EventLoop) {
    let listener = lp
        .run_until_complete(async { TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap() })
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::net::TcpStream::connect(addr).unwrap();
    lp.close().unwrap();
    // A second loop on the same thread: the listener still belongs to the
    // closed one, so accepting must fail instead of waiting forever.
    let other = ringloop::EventLoop::builder()
        .driver(ringloop::DriverChoice::Fallback)
        .build()
        .unwrap();
    let r = other
        .run_until_complete(async move {
            ringloop::timeout(std::time::Duration::from_secs(10), async {
                // The pending connection may be accepted by a non-blocking
                // syscall first; after that, waiting must error out.
                loop {
                    if let Err(e) = listener.accept().await {
                        return e;
                    }
                }
            })
            .await
        })
        .unwrap();
    let e = r.expect("an error, not a hang");
    eprintln!("{e}");
    drop(peer);
}
