//! futures-io compatibility: a third-party crate (`futures-util`'s
//! `BufReader`, `lines`, `copy`, `AsyncReadExt`/`AsyncWriteExt`) driving
//! ringloop sockets on both backends.
//!
//! The owned-buffer methods live in ringloop's `AsyncReadOwned` /
//! `AsyncWriteOwned` traits, which this file does not import, so method
//! calls such as `c.write_all(..)` and `wr.close()` resolve to `futures`'
//! extension traits (`futures_io_methods_are_not_shadowed` checks that);
//! the few owned-buffer writes are spelled `ringloop::AsyncWriteOwned::write_all(&s, ..)`.

mod common;

use futures_util::io::{self as fio, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use futures_util::{StreamExt, TryStreamExt};
use ringloop::EventLoop;
use ringloop::net::{TcpListener, TcpStream};
use ringloop::{spawn, timeout};
use std::time::Duration;

/// A line-based server written only against futures-io traits: uppercases
/// each line, answers "bye" and closes after "quit".
async fn upper_server<R, W>(rd: R, mut wr: W) -> usize
where
    R: fio::AsyncRead + Unpin,
    W: fio::AsyncWrite + Unpin,
{
    let mut lines = BufReader::new(rd).lines();
    let mut n = 0;
    while let Some(line) = lines.try_next().await.unwrap() {
        n += 1;
        if line == "quit" {
            wr.write_all(b"bye\n").await.unwrap();
            break;
        }
        wr.write_all(format!("{}\n", line.to_uppercase()).as_bytes())
            .await
            .unwrap();
        wr.flush().await.unwrap();
    }
    wr.close().await.unwrap();
    n
}

#[ringloop::test]
fn futures_util_line_echo_over_tcp(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn(async move {
            let s = listener.incoming().next().await.unwrap().unwrap();
            let (rd, wr) = s.into_split();
            upper_server(rd, wr).await
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        // The client uses the stream's own AsyncBufRead impl.
        let mut line = String::new();
        for i in 0..50 {
            AsyncWriteExt::write_all(&mut c, format!("line {i}\n").as_bytes())
                .await
                .unwrap();
            c.flush().await.unwrap();
            line.clear();
            c.read_line(&mut line).await.unwrap();
            assert_eq!(line, format!("LINE {i}\n"));
        }
        // Several lines in one write, answered in order.
        AsyncWriteExt::write_all(&mut c, b"a\nb\nc\nquit\n").await.unwrap();
        let mut rest = String::new();
        c.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "A\nB\nC\nbye\n", "then end of stream after the server's close");
        assert_eq!(server.await.unwrap(), 54);
    })
    .unwrap();
}

#[ringloop::test]
fn futures_util_copy_echoes_a_mebibyte_over_a_unix_pair(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (a, b) = ringloop::net::UnixStream::pair().unwrap();
        let echo = spawn(async move {
            let (rd, mut wr) = b.into_split();
            let n = fio::copy(rd, &mut wr).await.unwrap();
            wr.close().await.unwrap();
            n
        });
        let data: Vec<u8> = (0..1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect();
        let (mut rd, mut wr) = a.into_split();
        let expect = data.clone();
        let writer = spawn(async move {
            // Odd-sized writes, so the internal buffering sees ragged edges.
            for chunk in data.chunks(7919) {
                AsyncWriteExt::write_all(&mut wr, chunk).await.unwrap();
            }
            wr.close().await.unwrap();
        });
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.unwrap();
        assert!(got == expect, "copied bytes differ");
        writer.await.unwrap();
        assert_eq!(echo.await.unwrap(), expect.len() as u64);
    })
    .unwrap();
}

#[ringloop::test]
fn a_dropped_futures_io_read_loses_no_bytes(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (mut a, b) = ringloop::net::UnixStream::pair().unwrap();
        let mut buf = [0u8; 16];
        for _ in 0..5 {
            assert!(
                timeout(Duration::from_millis(1), AsyncReadExt::read(&mut a, &mut buf))
                    .await
                    .is_err()
            );
        }
        let (r, _) = ringloop::AsyncWriteOwned::write_all(&b, b"still here".as_slice()).await;
        r.unwrap();
        let n = AsyncReadExt::read(&mut a, &mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"still here");
    })
    .unwrap();
}

#[ringloop::test]
fn buffered_bytes_follow_the_read_half_after_split(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut c = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (s, _) = listener.accept().await.unwrap();
        let (r, _) = ringloop::AsyncWriteOwned::write_all(&s, b"first\nsecond\n".as_slice()).await;
        r.unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut line = String::new();
        // Both lines may arrive in one read and get buffered.
        while line.is_empty() {
            c.read_line(&mut line).await.unwrap();
        }
        assert_eq!(line, "first\n");
        let (mut rd, _wr) = c.into_split();
        line.clear();
        rd.read_line(&mut line).await.unwrap();
        assert_eq!(line, "second\n");
        line.clear();
        assert_eq!(rd.read_line(&mut line).await.unwrap(), 0);
    })
    .unwrap();
}

#[ringloop::test]
fn futures_io_write_to_a_closed_peer_is_an_error(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (mut a, b) = ringloop::net::UnixStream::pair().unwrap();
        drop(b);
        let mut res = Ok(());
        for _ in 0..4 {
            res = async {
                AsyncWriteExt::write_all(&mut a, &[0u8; 4096]).await?;
                a.flush().await
            }
            .await;
            if res.is_err() {
                break;
            }
        }
        let e = res.unwrap_err();
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{e:?}"
        );
    })
    .unwrap();
}

/// A slow reader on a std thread: accepts one connection, reads it to the
/// end in small steps with pauses, and returns the bytes.
fn slow_reader(listener: std::net::TcpListener) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        use std::io::Read;
        let (mut s, _) = listener.accept().unwrap();
        socket2::SockRef::from(&s).set_recv_buffer_size(16 * 1024).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).unwrap() {
                0 => return got,
                n => got.extend_from_slice(&buf[..n]),
            }
            if got.len() % (64 * 1024) < 8192 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    })
}

/// Joins the slow reader while the loop keeps running (the driver finishes
/// a dropped stream's pending send only while the loop runs).
fn join_while_running(lp: &ringloop::EventLoop, reader: std::thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    while !reader.is_finished() {
        lp.run_until_complete(ringloop::sleep(Duration::from_millis(5)))
            .unwrap();
    }
    reader.join().unwrap()
}

fn mebibyte() -> Vec<u8> {
    (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect()
}

/// Connects a ringloop stream with a 16 KiB send buffer to a slow reader.
async fn small_sndbuf_stream_to_slow_reader() -> (TcpStream, std::thread::JoinHandle<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = slow_reader(listener);
    let s = TcpStream::connect(addr).await.unwrap();
    socket2::SockRef::from(&s).set_send_buffer_size(16 * 1024).unwrap();
    (s, reader)
}

#[ringloop::test]
fn futures_io_methods_are_not_shadowed(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut c = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut s, _) = listener.accept().await.unwrap();
        // `futures`' write_all: a borrowed slice in, `io::Result<()>` out.
        let r: std::io::Result<()> = c.write_all(b"ping").await;
        r.unwrap();
        // `futures`' close: flush + shutdown(Write); `c` stays usable.
        c.close().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        s.write_all(b"pong").await.unwrap();
        s.close().await.unwrap();
        let mut buf = [0u8; 8];
        let n = c.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"pong");
    })
    .unwrap();
}

#[ringloop::test]
fn futures_io_write_all_then_drop_delivers_every_byte(lp: &EventLoop) {
    let data = mebibyte();
    let d = data.clone();
    let reader = lp
        .run_until_complete(async move {
            let (mut s, reader) = small_sndbuf_stream_to_slow_reader().await;
            AsyncWriteExt::write_all(&mut s, &d).await.unwrap();
            drop(s);
            reader
        })
        .unwrap();
    let got = join_while_running(lp, reader);
    assert_eq!(got.len(), data.len(), "bytes lost after drop");
    assert!(got == data, "bytes differ");
}

#[ringloop::test]
fn futures_io_write_all_then_builtin_close_delivers_every_byte(lp: &EventLoop) {
    let data = mebibyte();
    let d = data.clone();
    let reader = lp
        .run_until_complete(async move {
            let (mut s, reader) = small_sndbuf_stream_to_slow_reader().await;
            AsyncWriteExt::write_all(&mut s, &d).await.unwrap();
            ringloop::AsyncWriteOwned::close(s).await.unwrap();
            reader
        })
        .unwrap();
    let got = reader.join().unwrap();
    assert_eq!(got.len(), data.len(), "bytes lost after close");
    assert!(got == data, "bytes differ");
}

#[ringloop::test]
fn futures_io_write_all_then_drop_then_loop_teardown_delivers_every_byte(lp: &EventLoop) {
    // The driver's teardown finishes lingering sends before the ring goes.
    let choice = common::choice_of(lp);
    let own = ringloop::EventLoop::builder().driver(choice).build().unwrap();
    let data = mebibyte();
    let d = data.clone();
    let reader = own
        .run_until_complete(async move {
            let (mut s, reader) = small_sndbuf_stream_to_slow_reader().await;
            AsyncWriteExt::write_all(&mut s, &d).await.unwrap();
            drop(s);
            reader
        })
        .unwrap();
    own.close().unwrap();
    drop(own);
    let got = reader.join().unwrap();
    assert_eq!(got.len(), data.len(), "bytes lost at loop teardown");
    assert!(got == data, "bytes differ");
}

#[ringloop::test]
fn futures_io_write_all_on_a_write_half_then_drop_delivers_every_byte(lp: &EventLoop) {
    let data = mebibyte();
    let d = data.clone();
    let reader = lp
        .run_until_complete(async move {
            let (s, reader) = small_sndbuf_stream_to_slow_reader().await;
            let (rd, mut wr) = s.into_split();
            AsyncWriteExt::write_all(&mut wr, &d).await.unwrap();
            drop(wr);
            drop(rd);
            reader
        })
        .unwrap();
    let got = join_while_running(lp, reader);
    assert_eq!(got.len(), data.len(), "bytes lost after drop");
}
