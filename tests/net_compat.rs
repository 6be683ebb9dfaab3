//! futures-io compatibility: a third-party crate (`futures-util`'s
//! `BufReader`, `lines`, `copy`, `AsyncReadExt`/`AsyncWriteExt`) driving
//! ringloop sockets on both backends.
//!
//! The stream types' inherent owned-buffer methods (`read`, `write_all`,
//! ...) take precedence over the extension traits' methods of the same name,
//! so those are called as `AsyncWriteExt::write_all(&mut s, ..)` here;
//! generic code (like `upper_server`) sees only the traits.

#[macro_use]
mod common;

use futures_util::io::{self as fio, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use futures_util::{StreamExt, TryStreamExt};
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

both_backends! {
    fn futures_util_line_echo_over_tcp(lp) {
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
                AsyncWriteExt::write_all(&mut c, format!("line {i}\n").as_bytes()).await.unwrap();
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

    fn futures_util_copy_echoes_a_mebibyte_over_a_unix_pair(lp) {
        lp.run_until_complete(async {
            let (a, b) = ringloop::net::UnixStream::pair().unwrap();
            let echo = spawn(async move {
                let (rd, mut wr) = b.into_split();
                let n = fio::copy(rd, &mut wr).await.unwrap();
                wr.close().await.unwrap();
                n
            });
            let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
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

    fn a_dropped_futures_io_read_loses_no_bytes(lp) {
        lp.run_until_complete(async {
            let (mut a, b) = ringloop::net::UnixStream::pair().unwrap();
            let mut buf = [0u8; 16];
            for _ in 0..5 {
                assert!(timeout(Duration::from_millis(1), AsyncReadExt::read(&mut a, &mut buf)).await.is_err());
            }
            let (r, _) = b.write_all(b"still here".as_slice()).await;
            r.unwrap();
            let n = AsyncReadExt::read(&mut a, &mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"still here");
        })
        .unwrap();
    }

    fn buffered_bytes_follow_the_read_half_after_split(lp) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let mut c = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (s, _) = listener.accept().await.unwrap();
            let (r, _) = s.write_all(b"first\nsecond\n".as_slice()).await;
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

    fn futures_io_write_to_a_closed_peer_is_an_error(lp) {
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
                matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset),
                "{e:?}"
            );
        })
        .unwrap();
    }
}
