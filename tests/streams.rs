//! asyncio streams (`ringloop::streams`) on both backends: the reader's
//! semantics (CPython's test_streams shapes), echo over TCP and Unix
//! sockets, `drain` flow control, the reader pausing its transport, close /
//! `wait_closed`, and interoperation with Python's own asyncio streams.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use ringloop::EventLoop;
use ringloop::protocols::{Address, ExtraInfo};
use ringloop::streams::{
    DEFAULT_LIMIT, StreamError, StreamReader, StreamWriter, open_connection, open_connection_with_limit, start_server,
};
use ringloop::sync::Event;

fn fed(data: &[u8], eof: bool, limit: usize) -> StreamReader {
    let r = StreamReader::with_limit(limit);
    r.feed_data(data);
    if eof {
        r.feed_eof();
    }
    r
}

#[ringloop::test]
async fn readuntil_returns_up_to_and_including_the_separator() {
    let mut r = fed(b"lineAAA\nline2BBB", true, DEFAULT_LIMIT);
    assert_eq!(r.readuntil(b"AAA").await.unwrap(), b"lineAAA");
    assert_eq!(r.readuntil(b"\n").await.unwrap(), b"\n");
    match r.readuntil(b"XX").await {
        Err(StreamError::IncompleteRead(e)) => {
            assert_eq!(e.partial, b"line2BBB", "the rest is handed back as partial");
            assert_eq!(e.expected, None);
        }
        other => panic!("expected IncompleteRead, got {other:?}"),
    }
    assert!(r.at_eof(), "partial bytes leave the buffer");
    assert!(matches!(r.readuntil(b"").await, Err(StreamError::EmptySeparator)));
}

/// A server that writes `chunks` with a pause after each, then closes.
async fn trickle_server(chunks: &'static [&'static [u8]]) -> ringloop::protocols::Server {
    start_server(
        move |_reader, writer| async move {
            for c in chunks {
                writer.write(c).unwrap();
                writer.drain().await.unwrap();
                ringloop::sleep(Duration::from_millis(3)).await;
            }
            writer.close();
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap()
}

#[ringloop::test]
fn readuntil_waits_for_a_separator_split_across_receives(lp: &EventLoop) {
    lp.run_until_complete(async move {
        let server = trickle_server(&[b"ab", b"c-", b"-", b"-d"]).await;
        let (mut r, _w) = open_connection(server.local_addr().unwrap()).await.unwrap();
        assert_eq!(r.readuntil(b"---").await.unwrap(), b"abc---");
        assert_eq!(r.read_to_end().await.unwrap(), b"d");
        assert!(r.at_eof());
        server.close();
        server.wait_closed().await;
    })
    .unwrap();
}

#[ringloop::test]
async fn readuntil_past_the_limit_is_limit_overrun_and_keeps_the_bytes() {
    // Separator found beyond the limit.
    let mut r = fed(b"0123456789\n", false, 4);
    match r.readuntil(b"\n").await {
        Err(StreamError::LimitOverrun(e)) => {
            assert!(e.separator_found);
            assert_eq!(e.consumed, 10);
        }
        other => panic!("expected LimitOverrun, got {other:?}"),
    }
    assert_eq!(r.buffered(), 11, "readuntil leaves the bytes buffered");
    // Separator not found, buffer beyond the limit.
    let mut r = fed(b"0123456789", false, 4);
    match r.readuntil(b"\n").await {
        Err(StreamError::LimitOverrun(e)) => assert!(!e.separator_found),
        other => panic!("expected LimitOverrun, got {other:?}"),
    }
    assert_eq!(r.read(100).await.unwrap(), b"0123456789");
}

#[ringloop::test]
async fn readline_discards_an_overlong_line_and_returns_the_rest_at_eof() {
    let mut r = fed(b"0123456789\nok\nlast", true, 4);
    assert!(matches!(r.readline().await, Err(StreamError::LimitOverrun(_))));
    assert_eq!(r.readline().await.unwrap(), b"ok\n", "the overlong line is gone");
    assert_eq!(
        r.readline().await.unwrap(),
        b"last",
        "the rest without a newline at EOF"
    );
    assert_eq!(r.readline().await.unwrap(), b"", "empty at EOF");
}

#[ringloop::test]
async fn readexactly_at_an_early_eof_is_incomplete_read_with_the_bytes() {
    let mut r = fed(b"abcdef", true, DEFAULT_LIMIT);
    assert_eq!(r.readexactly(2).await.unwrap(), b"ab");
    assert_eq!(r.readexactly(0).await.unwrap(), b"");
    match r.readexactly(10).await {
        Err(e @ StreamError::IncompleteRead(_)) => {
            assert_eq!(e.to_string(), "4 bytes read on a total of 10 expected bytes");
            let StreamError::IncompleteRead(e) = e else {
                unreachable!()
            };
            assert_eq!(e.partial, b"cdef");
            assert_eq!(e.expected, Some(10));
        }
        other => panic!("expected IncompleteRead, got {other:?}"),
    }
    assert!(r.at_eof());
}

#[ringloop::test]
async fn read_returns_what_is_buffered_and_read_to_end_everything() {
    let mut r = fed(b"hello world", false, DEFAULT_LIMIT);
    assert_eq!(r.read(5).await.unwrap(), b"hello");
    assert_eq!(r.read(0).await.unwrap(), b"");
    r.feed_data(b"!!");
    r.feed_eof();
    assert_eq!(r.read_to_end().await.unwrap(), b" world!!");
    assert_eq!(r.read(10).await.unwrap(), b"", "empty at EOF");
}

#[ringloop::test]
fn read_waits_for_data_and_read_to_end_for_eof(lp: &EventLoop) {
    lp.run_until_complete(async move {
        let server = trickle_server(&[b"one", b"two", b"three"]).await;
        let (mut r, _w) = open_connection(server.local_addr().unwrap()).await.unwrap();
        assert_eq!(
            r.read(100).await.unwrap(),
            b"one",
            "read returns what came, not 100 bytes"
        );
        assert_eq!(r.read_to_end().await.unwrap(), b"twothree");
        server.close();
        server.wait_closed().await;
    })
    .unwrap();
}

#[ringloop::test]
async fn set_exception_fails_every_later_read() {
    let mut r = fed(b"data", false, DEFAULT_LIMIT);
    r.set_exception(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "boom"));
    let e = r.read(10).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
    match r.readline().await {
        Err(StreamError::Io(e)) => assert_eq!(e.to_string(), "boom"),
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(r.exception().is_some());
}

/// A line echo handler: every line back until EOF, then close.
async fn echo_lines(mut reader: StreamReader, writer: StreamWriter) {
    loop {
        match reader.readline().await {
            Ok(line) if line.is_empty() => break,
            Ok(line) => {
                if writer.write(&line).is_err() || writer.drain().await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    writer.close();
    let _ = writer.wait_closed().await;
}

#[ringloop::test]
fn streams_echo_over_tcp_with_addresses_and_clean_close(lp: &EventLoop) {
    lp.run_until_complete(async move {
        let server = start_server(echo_lines, "127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let (mut reader, writer) = open_connection(addr).await.unwrap();
        match writer.get_extra_info("peername") {
            Some(ExtraInfo::Address(Address::Inet(a))) => assert_eq!(a, addr),
            other => panic!("peername: {other:?}"),
        }
        let Some(ExtraInfo::Address(Address::Inet(local))) = writer.get_extra_info("sockname") else {
            panic!("no sockname");
        };
        assert_eq!(local.ip(), addr.ip());
        assert!(matches!(writer.get_extra_info("socket"), Some(ExtraInfo::Fd(fd)) if fd >= 0));
        assert!(writer.get_extra_info("no such thing").is_none());

        let long = vec![b'x'; 60_000];
        for msg in [&b"hello\n"[..], b"second line\n", &[&long[..], b"\n"].concat()] {
            writer.write(msg).unwrap();
            writer.drain().await.unwrap();
            assert_eq!(reader.readexactly(msg.len()).await.unwrap(), msg);
        }
        writer.write_eof().unwrap();
        assert_eq!(
            reader.read_to_end().await.unwrap(),
            b"",
            "the server closes after our EOF"
        );
        writer.close();
        assert!(writer.is_closing());
        writer.wait_closed().await.unwrap();
        assert!(writer.get_extra_info("socket").is_none(), "no fd once closed");
        assert!(
            writer.write(b"late").is_err(),
            "writing after the connection is lost fails"
        );
        assert!(
            writer.drain().await.is_err(),
            "drain after the connection is lost fails"
        );
        server.close();
        assert!(!server.is_serving());
        server.wait_closed().await;
        // The listener closes once the accept operation's cancellation is
        // through (on io_uring that can take a loop iteration or two after
        // wait_closed); it must not stay open.
        let mut tries = 0;
        loop {
            match open_connection(addr).await {
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
                    break;
                }
                Ok(_) => {
                    tries += 1;
                    assert!(tries < 100, "the listening socket stays open after wait_closed");
                    ringloop::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    })
    .unwrap();
}

#[ringloop::test]
fn streams_echo_over_unix_sockets(lp: &EventLoop) {
    let dir = std::env::temp_dir().join(format!("ringloop-streams-{}-{}", std::process::id(), lp.driver_kind()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sock");
    lp.run_until_complete(async move {
        let server = ringloop::streams::start_unix_server(echo_lines, &path).await.unwrap();
        let (mut reader, writer) = ringloop::streams::open_unix_connection(&path).await.unwrap();
        writer.write(b"over unix\n").unwrap();
        writer.drain().await.unwrap();
        assert_eq!(reader.readline().await.unwrap(), b"over unix\n");
        writer.close();
        writer.wait_closed().await.unwrap();
        server.close();
        server.wait_closed().await;
    })
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[ringloop::test]
fn drain_waits_while_the_peer_does_not_read_then_everything_arrives(lp: &EventLoop) {
    lp.run_until_complete(async move {
        let go = Rc::new(Event::new());
        let received = Rc::new(RefCell::new(Vec::new()));
        let (go2, received2) = (go.clone(), received.clone());
        let server = start_server(
            move |mut reader, writer| {
                let (go, received) = (go2.clone(), received2.clone());
                async move {
                    go.wait().await;
                    let all = reader.read_to_end().await.unwrap();
                    *received.borrow_mut() = all;
                    writer.close();
                }
            },
            "127.0.0.1:0",
        )
        .await
        .unwrap();
        let (_reader, writer) = open_connection(server.local_addr().unwrap()).await.unwrap();
        let mut rng = common::net::XorShift::new(7);
        let mut data = vec![0u8; 8 << 20];
        rng.fill(&mut data);
        writer.write(&data).unwrap();
        assert!(writer.transport().get_write_buffer_size() > 64 * 1024);
        {
            let mut drain = std::pin::pin!(writer.drain());
            // Far more than socket buffers hold: drain cannot finish while
            // the server does not read.
            for _ in 0..20 {
                assert!(futures_util::poll!(drain.as_mut()).is_pending());
                ringloop::sleep(Duration::from_millis(5)).await;
            }
            go.set();
            drain.await.unwrap();
        }
        assert!(
            writer.transport().get_write_buffer_size() <= 16 * 1024,
            "drained to the low-water mark"
        );
        writer.close();
        writer.wait_closed().await.unwrap();
        server.close();
        server.wait_closed().await;
        assert!(*received.borrow() == data, "every byte arrived in order");
    })
    .unwrap();
}

#[ringloop::test]
fn a_full_reader_pauses_its_transport_and_resumes_when_read(lp: &EventLoop) {
    lp.run_until_complete(async move {
        const TOTAL: usize = 1 << 20;
        let server = start_server(
            |_reader, writer| async move {
                let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
                writer.write(&data).unwrap();
                let _ = writer.drain().await;
                writer.close();
            },
            "127.0.0.1:0",
        )
        .await
        .unwrap();
        let limit = 1024;
        let (mut reader, writer) = open_connection_with_limit(server.local_addr().unwrap(), limit)
            .await
            .unwrap();
        // Let the data come in without reading it.
        let mut waited = 0;
        while reader.buffered() <= 2 * limit {
            ringloop::sleep(Duration::from_millis(2)).await;
            waited += 1;
            assert!(waited < 5000, "no data arrived");
        }
        ringloop::sleep(Duration::from_millis(20)).await;
        assert!(
            !writer.transport().is_reading(),
            "more than 2*limit buffered pauses reading"
        );
        assert!(reader.buffered() < TOTAL, "the transport stopped reading");
        let all = reader.read_to_end().await.unwrap();
        assert_eq!(all.len(), TOTAL);
        assert!(all.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        writer.close();
        writer.wait_closed().await.unwrap();
        server.close();
        server.wait_closed().await;
    })
    .unwrap();
}

#[ringloop::test]
fn server_wait_closed_waits_for_its_connections(lp: &EventLoop) {
    lp.run_until_complete(async move {
        let server = start_server(echo_lines, "127.0.0.1:0").await.unwrap();
        let (mut reader, writer) = open_connection(server.local_addr().unwrap()).await.unwrap();
        writer.write(b"ping\n").unwrap();
        assert_eq!(reader.readline().await.unwrap(), b"ping\n");
        server.close();
        let mut closed = std::pin::pin!(server.wait_closed());
        for _ in 0..5 {
            assert!(
                futures_util::poll!(closed.as_mut()).is_pending(),
                "a connection is still up"
            );
            ringloop::sleep(Duration::from_millis(2)).await;
        }
        // The accepted connection still works after close().
        writer.write(b"still\n").unwrap();
        assert_eq!(reader.readline().await.unwrap(), b"still\n");
        writer.write_eof().unwrap();
        closed.await;
        assert_eq!(
            server.serve_forever().await,
            Err(ringloop::protocols::ServeForeverError::Closed)
        );
    })
    .unwrap();
}

#[ringloop::test]
fn open_connection_to_a_closed_port_fails(lp: &EventLoop) {
    lp.run_until_complete(async move {
        let (_held, addr) = common::refusing_port();
        let e = open_connection(addr).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    })
    .unwrap();
}

// ------------------------------------------------------------ Python interop

fn python3() -> Option<&'static str> {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: python3 not found; the Python interop test needs it");
    }
    ok.then_some("python3")
}

/// A client written with Python's asyncio streams.
const PY_CLIENT: &str = r#"
import asyncio, sys
async def main(port):
    r, w = await asyncio.open_connection('127.0.0.1', port)
    msgs = [b'hello\n', b'from python\n', b'y' * 60000 + b'\n']
    for m in msgs:
        w.write(m)
        await w.drain()
        got = await r.readexactly(len(m))
        assert got == m, (len(got), len(m))
    w.write_eof()
    rest = await r.read()
    w.close()
    await w.wait_closed()
    print(f"echoed {len(msgs)} lines, rest {rest!r}")
asyncio.run(main(int(sys.argv[1])))
"#;

/// A server written with Python's asyncio streams: prints its port, then
/// answers each line uppercased until EOF.
const PY_SERVER: &str = r#"
import asyncio
async def handle(r, w):
    while line := await r.readline():
        w.write(line.upper())
        await w.drain()
    w.close()
    await w.wait_closed()
async def main():
    server = await asyncio.start_server(handle, '127.0.0.1', 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await asyncio.sleep(30)
asyncio.run(main())
"#;

#[ringloop::test]
fn python_asyncio_client_talks_to_a_ringloop_streams_server(lp: &EventLoop) {
    let Some(py) = python3() else { return };
    lp.run_until_complete(async move {
        let server = start_server(echo_lines, "127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port().to_string();
        let out = ringloop::process::Command::new(py)
            .args(["-c", PY_CLIENT, &port])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "python client failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout, "echoed 3 lines, rest b''\n");
        server.close();
        server.wait_closed().await;
    })
    .unwrap();
}

#[ringloop::test]
fn ringloop_streams_client_talks_to_a_python_asyncio_server(lp: &EventLoop) {
    let Some(py) = python3() else { return };
    lp.run_until_complete(async move {
        let mut child = ringloop::process::Command::new(py)
            .args(["-c", PY_SERVER])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut port = Vec::new();
        while !port.ends_with(b"\n") {
            let (n, buf) = stdout.read(Vec::with_capacity(64)).await;
            assert!(n.unwrap() > 0, "python server exited before printing its port");
            port.extend_from_slice(&buf);
        }
        let port: u16 = String::from_utf8(port).unwrap().trim().parse().unwrap();
        let (mut reader, writer) = open_connection(("127.0.0.1", port)).await.unwrap();
        writer.writelines([&b"abc\n"[..], b"def\nlast"]).unwrap();
        writer.write_eof().unwrap();
        assert_eq!(reader.readline().await.unwrap(), b"ABC\n");
        assert_eq!(reader.readuntil(b"\n").await.unwrap(), b"DEF\n");
        assert_eq!(reader.read_to_end().await.unwrap(), b"LAST");
        writer.close();
        writer.wait_closed().await.unwrap();
        child.kill().await.unwrap();
    })
    .unwrap();
}
