//! TLS (feature `tls`): echo over TLS 1.2 and 1.3 with ALPN, handshake
//! failures, and interop with `openssl s_client` and Python's `ssl` when
//! they are installed (skipped with a message otherwise). Every test runs
//! on both backends.
#![cfg(feature = "tls")]

#[path = "common/tls_certs.rs"]
mod certs;
mod common;

use ringloop::EventLoop;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use certs::{TestPki, have_tool};
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use ringloop::net::{TcpListener, TcpStream};
use ringloop::tls::TlsAcceptor;
use ringloop::tls::rustls::{self, ProtocolVersion};

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// Accepts one connection, does the handshake, echoes until the client's
/// end of stream, then closes (close_notify). Returns what the server saw:
/// (version, alpn, bytes echoed).
async fn echo_once(
    l: TcpListener,
    acceptor: TlsAcceptor,
) -> io::Result<(Option<ProtocolVersion>, Option<Vec<u8>>, usize)> {
    let (tcp, _) = l.accept().await?;
    let mut tls = acceptor.accept(tcp).await?;
    let version = tls.protocol_version();
    let alpn = tls.alpn_protocol().map(|p| p.to_vec());
    let mut buf = vec![0u8; 20_000];
    let mut total = 0;
    loop {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        tls.write_all(&buf[..n]).await?;
        total += n;
    }
    tls.close().await?;
    Ok((version, alpn, total))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Client: sends `data` while reading the echo, closes its write side,
/// reads to the end.
async fn echo_client(
    addr: SocketAddr,
    connector: ringloop::tls::TlsConnector,
    data: Vec<u8>,
) -> io::Result<(Option<ProtocolVersion>, Option<Vec<u8>>, Vec<u8>)> {
    let tcp = TcpStream::connect_addr(addr).await?;
    let tls = connector.connect("localhost", tcp).await?;
    let version = tls.protocol_version();
    let alpn = tls.alpn_protocol().map(|p| p.to_vec());
    let (mut rd, mut wr) = futures_util::io::AsyncReadExt::split(tls);
    let writer = async move {
        wr.write_all(&data).await?;
        wr.close().await?;
        Ok::<_, io::Error>(())
    };
    let reader = async move {
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await?;
        Ok::<_, io::Error>(got)
    };
    let (w, r) = futures_util::future::join(writer, reader).await;
    w?;
    Ok((version, alpn, r?))
}

fn echo_with_version(
    lp: &ringloop::EventLoop,
    version: &'static rustls::SupportedProtocolVersion,
    expect: ProtocolVersion,
) {
    let pki = TestPki::new();
    let (l, addr) = listener();
    let acceptor = pki.acceptor(&[b"h2", b"echo/1"]);
    let connector = pki.connector_version(version, &[b"echo/1"]);
    let data = pattern(1 << 20);
    let (server, client) = lp
        .run_until_complete(async move {
            let server = ringloop::spawn(echo_once(l, acceptor));
            let client = echo_client(addr, connector, data.clone()).await;
            let server = server.await.expect("server task");
            (server, client.map(|(v, a, got)| (v, a, got == data, got.len())))
        })
        .unwrap();
    let (sv, sa, echoed) = server.expect("server side");
    let (cv, ca, same, len) = client.expect("client side");
    assert_eq!(sv, Some(expect));
    assert_eq!(cv, Some(expect));
    assert_eq!(sa.as_deref(), Some(&b"echo/1"[..]));
    assert_eq!(ca.as_deref(), Some(&b"echo/1"[..]));
    assert_eq!(echoed, 1 << 20);
    assert_eq!(len, 1 << 20);
    assert!(same, "echoed bytes differ");
}

/// Runs `cmd` to completion in a blocking thread (killed after 30 s), with
/// `input` on stdin; stdin is kept open until the child exits when
/// `hold_stdin` (so a client that quits at end of input waits for the
/// server). Returns (success, stdout, stderr).
async fn run_tool(mut cmd: Command, input: Vec<u8>, hold_stdin: bool) -> (bool, String, String) {
    ringloop::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tool");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&input).expect("tool stdin");
        let held = if hold_stdin {
            Some(stdin)
        } else {
            drop(stdin);
            None
        };
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let pid = child.id();
        let watchdog = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                // SAFETY: kill(2) with signal 0 only probes the pid.
                if unsafe { libc::kill(pid as i32, 0) } != 0 {
                    return;
                }
            }
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        });
        let err_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut stdout = String::new();
        let _ = out.read_to_string(&mut stdout);
        let status = child.wait().expect("wait tool");
        drop(held);
        let stderr = err_thread.join().unwrap();
        let _ = watchdog.join();
        (status.success(), stdout, stderr)
    })
    .await
    .expect("blocking task")
}

/// Server for the external clients: handshake, read one line, answer
/// `pong:<line>`, close with close_notify.
async fn pong_server(l: TcpListener, acceptor: TlsAcceptor) -> io::Result<(Option<ProtocolVersion>, Option<Vec<u8>>)> {
    let (tcp, _) = l.accept().await?;
    let tls = acceptor.accept(tcp).await?;
    let version = tls.protocol_version();
    let alpn = tls.alpn_protocol().map(|p| p.to_vec());
    let mut reader = futures_util::io::BufReader::new(tls);
    let mut line = String::new();
    futures_util::io::AsyncBufReadExt::read_line(&mut reader, &mut line).await?;
    let mut tls = reader.into_inner();
    tls.write_all(format!("pong:{}", line).as_bytes()).await?;
    tls.close().await?;
    Ok((version, alpn))
}

#[ringloop::test]
fn echo_tls13_1mib(lp: &EventLoop) {
    echo_with_version(lp, &rustls::version::TLS13, ProtocolVersion::TLSv1_3);
}

#[ringloop::test]
fn echo_tls12_1mib(lp: &EventLoop) {
    echo_with_version(lp, &rustls::version::TLS12, ProtocolVersion::TLSv1_2);
}

#[ringloop::test]
fn untrusted_certificate_fails_both_sides(lp: &EventLoop) {
    let pki = TestPki::new();
    let other = TestPki::new();
    let (l, addr) = listener();
    let acceptor = pki.acceptor(&[]);
    let connector = other.connector(&[]);
    let (server, client) = lp
        .run_until_complete(async move {
            let server = ringloop::spawn(async move {
                let (tcp, _) = l.accept().await?;
                acceptor.accept(tcp).await.map(drop)
            });
            let tcp = TcpStream::connect_addr(addr).await.unwrap();
            let client = connector.connect("localhost", tcp).await.map(drop);
            (server.await.unwrap(), client)
        })
        .unwrap();
    let c = client.expect_err("client must reject an unknown CA");
    assert_eq!(c.kind(), io::ErrorKind::InvalidData, "{c}");
    assert!(c.to_string().to_lowercase().contains("certificate"), "{c}");
    // The client's alert reaches the server.
    let s = server.expect_err("server must see the failed handshake");
    assert!(
        matches!(s.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof),
        "{s}"
    );
}

#[ringloop::test]
fn no_common_alpn_protocol_is_an_error(lp: &EventLoop) {
    let pki = TestPki::new();
    let (l, addr) = listener();
    let acceptor = pki.acceptor(&[b"h2"]);
    let connector = pki.connector(&[b"http/1.1"]);
    let (server, client) = lp
        .run_until_complete(async move {
            let server = ringloop::spawn(async move {
                let (tcp, _) = l.accept().await?;
                acceptor.accept(tcp).await.map(drop)
            });
            let tcp = TcpStream::connect_addr(addr).await.unwrap();
            let client = connector.connect("localhost", tcp).await.map(drop);
            (server.await.unwrap(), client)
        })
        .unwrap();
    let s = server.expect_err("no ALPN overlap");
    assert_eq!(s.kind(), io::ErrorKind::InvalidData);
    assert!(s.to_string().contains("protocol"), "{s}");
    // The server's alert reaches the client.
    let c = client.expect_err("client must see the alert");
    assert_eq!(c.kind(), io::ErrorKind::InvalidData, "{c}");
}

#[ringloop::test]
fn bad_server_name_and_peer_closing_mid_handshake(lp: &EventLoop) {
    let pki = TestPki::new();
    let (l, addr) = listener();
    let acceptor = pki.acceptor(&[]);
    let connector = pki.connector(&[]);
    let (server, bad_name) = lp
        .run_until_complete(async move {
            let server = ringloop::spawn(async move {
                let (tcp, _) = l.accept().await?;
                acceptor.accept(tcp).await.map(drop)
            });
            let tcp = TcpStream::connect_addr(addr).await.unwrap();
            let bad_name = connector.connect("not a name!", tcp).await.map(drop);
            // The stream was dropped with the failed connect: the
            // server sees the end of file mid-handshake.
            (server.await.unwrap(), bad_name)
        })
        .unwrap();
    assert_eq!(bad_name.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(server.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
}

#[ringloop::test]
fn truncation_without_close_notify_is_unexpected_eof(lp: &EventLoop) {
    let pki = TestPki::new();
    let (l, addr) = listener();
    let acceptor = pki.acceptor(&[]);
    let connector = pki.connector(&[]);
    let (clean, truncated) = lp
        .run_until_complete(async move {
            let mut results = Vec::new();
            for clean in [true, false] {
                let acceptor = acceptor.clone();
                let server = async {
                    let (tcp, _) = l.accept().await?;
                    let mut tls = acceptor.accept(tcp).await?;
                    let mut got = Vec::new();
                    let r = tls.read_to_end(&mut got).await;
                    Ok::<_, io::Error>((got, r.map(drop)))
                };
                let client = async {
                    let tcp = TcpStream::connect_addr(addr).await?;
                    let mut tls = connector.connect("localhost", tcp).await?;
                    tls.write_all(b"abc").await?;
                    if clean {
                        tls.close().await?;
                    } else {
                        tls.flush().await?;
                        // The TCP stream goes away without close_notify.
                        let (mut tcp, _session) = tls.into_parts();
                        tcp.close().await?;
                    }
                    Ok::<_, io::Error>(())
                };
                let (s, c) = futures_util::future::join(server, client).await;
                c.unwrap();
                results.push(s.unwrap());
            }
            let truncated = results.pop().unwrap();
            (results.pop().unwrap(), truncated)
        })
        .unwrap();
    assert_eq!(clean.0, b"abc");
    assert!(clean.1.is_ok(), "close_notify must read as end of file: {:?}", clean.1);
    assert_eq!(truncated.0, b"abc");
    assert_eq!(truncated.1.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
}

#[ringloop::test]
fn pem_helpers_reject_garbage(_lp: &EventLoop) {
    assert_eq!(
        ringloop::tls::certs_from_pem(b"no pem here").unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
    assert_eq!(
        ringloop::tls::private_key_from_pem(b"").unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
    let pki = TestPki::new();
    // A key that does not belong to the certificate.
    let other = TestPki::new();
    let certs = ringloop::tls::certs_from_pem(pki.cert_pem.as_bytes()).unwrap();
    let key = ringloop::tls::private_key_from_pem(other.key_pem.as_bytes()).unwrap();
    assert_eq!(
        ringloop::tls::server_config(certs, key, &[]).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        ringloop::tls::load_certs(pki.dir.join("missing.pem"))
            .unwrap_err()
            .kind(),
        io::ErrorKind::NotFound
    );
}

#[ringloop::test]
fn openssl_s_client_tls13_and_tls12(lp: &EventLoop) {
    if !have_tool("openssl", &["version"]) {
        eprintln!("SKIP: openssl not installed");
        return;
    }
    let pki = TestPki::new();
    for (flag, expect) in [
        ("-tls1_3", ProtocolVersion::TLSv1_3),
        ("-tls1_2", ProtocolVersion::TLSv1_2),
    ] {
        let (l, addr) = listener();
        let acceptor = pki.acceptor(&[b"h2", b"http/1.1"]);
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &addr.to_string(),
            flag,
            "-alpn",
            "http/1.1",
            "-servername",
            "localhost",
            "-verify_hostname",
            "localhost",
            "-verify_return_error",
            "-brief",
            "-CAfile",
        ])
        .arg(pki.ca_path());
        let (server, (ok, stdout, stderr)) = lp
            .run_until_complete(async move {
                let server = ringloop::spawn(pong_server(l, acceptor));
                let tool = run_tool(cmd, b"ping\n".to_vec(), true).await;
                (server.await.unwrap(), tool)
            })
            .unwrap();
        let (v, alpn) = server.unwrap_or_else(|e| panic!("server: {e}; s_client stderr: {stderr}"));
        assert_eq!(v, Some(expect));
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert!(stdout.contains("pong:ping"), "stdout {stdout:?} stderr {stderr:?}");
        assert!(
            stderr.contains("Verification: OK") || stderr.contains("Verify return code: 0"),
            "{stderr}"
        );
        let _ = ok; // s_client's exit status after the server's close varies by version
    }
}

#[ringloop::test]
fn python_ssl_tls13_and_tls12(lp: &EventLoop) {
    if !have_tool("python3", &["-c", "import ssl"]) {
        eprintln!("SKIP: python3 with ssl not installed");
        return;
    }
    let pki = TestPki::new();
    for (pyver, expect) in [
        ("TLSv1_3", ProtocolVersion::TLSv1_3),
        ("TLSv1_2", ProtocolVersion::TLSv1_2),
    ] {
        let (l, addr) = listener();
        let acceptor = pki.acceptor(&[b"h2", b"http/1.1"]);
        let script = format!(
            "import socket, ssl, sys\n\
             ctx = ssl.create_default_context(cafile=sys.argv[1])\n\
             ctx.minimum_version = ssl.TLSVersion.{pyver}\n\
             ctx.maximum_version = ssl.TLSVersion.{pyver}\n\
             ctx.set_alpn_protocols(['h2'])\n\
             with socket.create_connection(('127.0.0.1', {port})) as raw:\n\
             \x20   with ctx.wrap_socket(raw, server_hostname='localhost') as s:\n\
             \x20       s.sendall(b'ping\\n')\n\
             \x20       data = b''\n\
             \x20       while True:\n\
             \x20           chunk = s.recv(4096)\n\
             \x20           if not chunk: break\n\
             \x20           data += chunk\n\
             \x20       print(s.version(), s.selected_alpn_protocol(), data.decode())\n",
            port = addr.port()
        );
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(script).arg(pki.ca_path());
        let (server, (ok, stdout, stderr)) = lp
            .run_until_complete(async move {
                let server = ringloop::spawn(pong_server(l, acceptor));
                let tool = run_tool(cmd, Vec::new(), false).await;
                (server.await.unwrap(), tool)
            })
            .unwrap();
        let (v, alpn) = server.unwrap_or_else(|e| panic!("server: {e}; python stderr: {stderr}"));
        assert!(ok, "python failed: {stderr}");
        assert_eq!(v, Some(expect));
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
        let want = format!("{} h2 pong:ping", pyver.replace('_', "."));
        assert_eq!(stdout.trim(), want, "stderr: {stderr}");
    }
}
