//! hyper on ringloop (feature `hyper`): HTTP/1.1 keep-alive and large
//! bodies, HTTP/2 concurrency, graceful shutdown, timeouts on the virtual
//! clock, upgrades through the `Send` wrapper, HTTPS with ALPN (feature
//! `tls`), and real clients (curl, Python's http.client) when installed.
//! Every test runs on both backends.
#![cfg(feature = "hyper")]

#[cfg(feature = "tls")]
#[path = "common/tls_certs.rs"]
mod certs;
mod common;

use ringloop::EventLoop;
use std::convert::Infallible;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Version};
use ringloop::hyper::{Server, http1_handshake, http2_handshake, serve};
use ringloop::net::{TcpListener, TcpStream};
use ringloop::sync::{Barrier, Event};

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// What the test services share with the test body.
#[derive(Default)]
struct Ctl {
    /// `/barrier` waits here (set up for the HTTP/2 test).
    barrier: Option<Barrier>,
    /// `/wait` sets `started`, then waits for `release`.
    started: Event,
    release: Event,
}

/// `/n/<x>` answers `n/<x>\n`; `/echo` answers the request body; `/barrier`
/// answers once all parties arrived; `/wait` answers when released;
/// `/upgrade` switches to an echo protocol on the raw stream.
async fn handle(ctl: Rc<Ctl>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let body = match path.as_str() {
        "/echo" => match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
        },
        "/barrier" => {
            ctl.barrier
                .as_ref()
                .expect("barrier")
                .wait()
                .await
                .expect("barrier broken");
            Bytes::from("through")
        }
        "/wait" => {
            ctl.started.set();
            ctl.release.wait().await;
            Bytes::from("released")
        }
        "/upgrade" => return Ok(upgrade_to_echo(req)),
        "/ws" => return Ok(websocket_echo(req)),
        p if p.starts_with("/n/") => Bytes::from(format!("{}\n", &p[1..])),
        _ => return Ok(status(StatusCode::NOT_FOUND)),
    };
    Ok(Response::new(Full::new(body)))
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::default());
    *r.status_mut() = code;
    r
}

/// Answers 101 and, once hyper hands the connection over, echoes on it
/// with `futures-io` (the way a WebSocket library would take it).
fn upgrade_to_echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let on_upgrade = hyper::upgrade::on(req);
    ringloop::spawn(async move {
        let upgraded = on_upgrade.await.expect("upgrade");
        let mut io = match ringloop::hyper::downcast_upgraded::<TcpStream>(upgraded) {
            Ok(io) => io,
            Err(_) => panic!("upgraded connection is not a LoopIo<TcpStream>"),
        };
        // The wrapper is `Send` (what hyper demanded) and usable here.
        fn assert_send<T: Send>(_: &T) {}
        assert_send(&io);
        let mut buf = [0u8; 1024];
        loop {
            let n = io.read(&mut buf).await.expect("read upgraded");
            if n == 0 {
                break;
            }
            io.write_all(&buf[..n]).await.expect("write upgraded");
        }
        io.close().await.expect("close upgraded");
    })
    .detach();
    let mut r = status(StatusCode::SWITCHING_PROTOCOLS);
    r.headers_mut().insert(CONNECTION, "upgrade".parse().unwrap());
    r.headers_mut().insert(UPGRADE, "echo".parse().unwrap());
    r
}

/// A WebSocket echo endpoint through hyper's upgrade: async-tungstenite
/// runs on the handed-back `futures-io` stream.
fn websocket_echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    use async_tungstenite::tungstenite::handshake::derive_accept_key;
    use async_tungstenite::tungstenite::protocol::Role;
    use futures_util::StreamExt;
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return status(StatusCode::BAD_REQUEST);
    };
    let on_upgrade = hyper::upgrade::on(req);
    ringloop::spawn(async move {
        let upgraded = on_upgrade.await.expect("upgrade");
        let Ok(io) = ringloop::hyper::downcast_upgraded::<TcpStream>(upgraded) else {
            panic!("not a LoopIo<TcpStream>")
        };
        let mut ws = async_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
            if ws.send(msg).await.is_err() {
                break;
            }
        }
    })
    .detach();
    let mut r = status(StatusCode::SWITCHING_PROTOCOLS);
    r.headers_mut().insert(CONNECTION, "upgrade".parse().unwrap());
    r.headers_mut().insert(UPGRADE, "websocket".parse().unwrap());
    r.headers_mut().insert(
        "sec-websocket-accept",
        derive_accept_key(key.as_bytes()).parse().unwrap(),
    );
    r
}

macro_rules! svc {
    ($ctl:expr) => {{
        let ctl = $ctl.clone();
        service_fn(move |req| handle(ctl.clone(), req))
    }};
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header(HOST, "localhost")
        .body(Full::default())
        .unwrap()
}

async fn body_string(resp: Response<Incoming>) -> String {
    let b = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(b.to_vec()).expect("utf-8 body")
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 253) as u8).collect()
}

/// Spawns a server on `l` until the returned event is set; the task gives
/// the result of `serve`.
fn spawn_server(server: Server, l: TcpListener, ctl: &Rc<Ctl>) -> (Rc<Event>, ringloop::Task<io::Result<()>>) {
    let stop = Rc::new(Event::new());
    let s = stop.clone();
    let svc = svc!(ctl);
    let task = ringloop::spawn(async move {
        server
            .serve(&l, svc, async move {
                s.wait().await;
            })
            .await
    });
    (stop, task)
}

/// Runs `cmd` in a blocking thread (killed after 30 s); gives (success,
/// stdout, stderr).
async fn run_tool(mut cmd: Command) -> (bool, String, String) {
    ringloop::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tool");
        let pid = child.id();
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        let watchdog = std::thread::spawn(move || {
            for _ in 0..600 {
                if d.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: kill(2) of our own child, not yet reaped (`done` unset).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        });
        let err_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut stdout = String::new();
        let _ = out.read_to_string(&mut stdout);
        let stderr = err_thread.join().unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = watchdog.join();
        let status = child.wait().expect("wait tool");
        (status.success(), stdout, stderr)
    })
    .await
    .expect("blocking task")
}

fn have_tool(tool: &str, args: &[&str]) -> bool {
    Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn curl_has_http2() -> bool {
    Command::new("curl")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("HTTP2"))
        .unwrap_or(false)
}

#[ringloop::test]
fn http1_1000_keep_alive_requests_and_1mib_body(lp: &EventLoop) {
    let (l, addr) = listener();
    lp.run_until_complete(async move {
        let ctl = Rc::new(Ctl::default());
        let (stop, server) = spawn_server(Server::new(), l, &ctl);
        let tcp = TcpStream::connect_addr(addr).await.unwrap();
        let mut send = http1_handshake::<_, Full<Bytes>>(tcp).await.unwrap();
        // One connection carries all of them: HTTP/1.1 keep-alive.
        for i in 0..1000 {
            send.ready().await.expect("connection still open");
            let resp = send.send_request(get(&format!("/n/{i}"))).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.version(), Version::HTTP_11);
            assert_eq!(body_string(resp).await, format!("n/{i}\n"));
        }
        let data = pattern(1 << 20);
        let req = Request::post("/echo")
            .header(HOST, "localhost")
            .body(Full::new(Bytes::from(data.clone())))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got.len(), data.len());
        assert!(got[..] == data[..], "1 MiB echo differs");
        let resp = send.send_request(get("/missing")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        // Graceful shutdown closes the idle keep-alive connection.
        stop.set();
        server.await.unwrap().expect("serve result");
        send.ready().await.expect_err("the server closed the connection");
    })
    .unwrap();
}

#[ringloop::test]
fn http2_100_concurrent_streams(lp: &EventLoop) {
    let (l, addr) = listener();
    lp.run_until_complete(async move {
        // Every response waits until all 100 requests are in the
        // server at once: only truly concurrent streams get through.
        let ctl = Rc::new(Ctl {
            barrier: Some(Barrier::new(100)),
            ..Ctl::default()
        });
        let (stop, server) = spawn_server(Server::new(), l, &ctl);
        let tcp = TcpStream::connect_addr(addr).await.unwrap();
        let send = http2_handshake::<_, Full<Bytes>>(tcp).await.unwrap();
        let reqs = (0..100).map(|i| {
            let mut send = send.clone();
            async move {
                let resp = send
                    .send_request(get(&format!("http://localhost/barrier?{i}")))
                    .await
                    .unwrap();
                assert_eq!(resp.version(), Version::HTTP_2);
                body_string(resp).await
            }
        });
        let bodies = ringloop::timeout(Duration::from_secs(30), ringloop::gather(reqs))
            .await
            .expect("100 concurrent streams did not all reach the server")
            .unwrap();
        assert_eq!(bodies.len(), 100);
        assert!(bodies.iter().all(|b| b == "through"));
        // And sequential streams after them.
        for i in 0..10 {
            let mut s = send.clone();
            let resp = s.send_request(get(&format!("http://localhost/n/{i}"))).await.unwrap();
            assert_eq!(body_string(resp).await, format!("n/{i}\n"));
        }
        stop.set();
        server.await.unwrap().expect("serve result");
    })
    .unwrap();
}

#[ringloop::test]
fn graceful_shutdown_finishes_the_request_in_flight(lp: &EventLoop) {
    let (l, addr) = listener();
    lp.run_until_complete(async move {
        let ctl = Rc::new(Ctl::default());
        let (stop, server) = spawn_server(Server::new(), l, &ctl);
        // One HTTP/1.1 and one HTTP/2 request in flight.
        let tcp = TcpStream::connect_addr(addr).await.unwrap();
        let mut h1 = http1_handshake::<_, Full<Bytes>>(tcp).await.unwrap();
        let tcp = TcpStream::connect_addr(addr).await.unwrap();
        let mut h2 = http2_handshake::<_, Full<Bytes>>(tcp).await.unwrap();
        let r1 = ringloop::spawn(async move { body_string(h1.send_request(get("/wait")).await.unwrap()).await });
        let r2 =
            ringloop::spawn(
                async move { body_string(h2.send_request(get("http://localhost/wait")).await.unwrap()).await },
            );
        ctl.started.wait().await;
        stop.set();
        // The server waits for them.
        for _ in 0..20 {
            ringloop::yield_now().await;
        }
        assert!(!server.is_done(), "serve returned with requests in flight");
        ctl.release.set();
        assert_eq!(r1.await.unwrap(), "released");
        assert_eq!(r2.await.unwrap(), "released");
        server.await.unwrap().expect("serve result");
    })
    .unwrap();
}

#[ringloop::test]
fn upgrade_hands_the_stream_over_through_the_send_wrapper(lp: &EventLoop) {
    let (l, addr) = listener();
    lp.run_until_complete(async move {
        let ctl = Rc::new(Ctl::default());
        let (stop, server) = spawn_server(Server::new(), l, &ctl);
        let mut tcp = TcpStream::connect_addr(addr).await.unwrap();
        // Bytes right after the request head: hyper reads them ahead,
        // `downcast_upgraded` must hand them back first.
        tcp.write_all(b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nearly bytes|")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        let head_end = loop {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the 101");
            got.extend_from_slice(&buf[..n]);
            if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
        };
        let head = String::from_utf8_lossy(&got[..head_end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        tcp.write_all(b"late bytes").await.unwrap();
        tcp.close().await.unwrap();
        let mut rest = got[head_end..].to_vec();
        tcp.read_to_end(&mut rest).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&rest), "early bytes|late bytes");
        stop.set();
        server.await.unwrap().expect("serve result");
    })
    .unwrap();
}

#[ringloop::test]
fn websocket_through_hyper_upgrade_with_async_tungstenite(lp: &EventLoop) {
    use async_tungstenite::tungstenite::Message;
    use futures_util::StreamExt;
    let (l, addr) = listener();
    lp.run_until_complete(async move {
        let ctl = Rc::new(Ctl::default());
        let (stop, server) = spawn_server(Server::new(), l, &ctl);
        let tcp = TcpStream::connect_addr(addr).await.unwrap();
        let (mut ws, resp) = async_tungstenite::client_async(format!("ws://{addr}/ws"), tcp)
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        let big = "x".repeat(200_000);
        for msg in [
            Message::text("hello"),
            Message::binary(vec![1u8, 2, 3]),
            Message::text(big.clone()),
        ] {
            ws.send(msg.clone()).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), msg);
        }
        ws.close(None).await.unwrap();
        // The server answers the close; the stream then ends.
        while let Some(m) = ws.next().await {
            if m.is_err() {
                break;
            }
        }
        stop.set();
        server.await.unwrap().expect("serve result");
    })
    .unwrap();
}

#[ringloop::test]
fn dropping_serve_shuts_connections_down(lp: &EventLoop) {
    let (l, addr) = listener();
    lp.run_until_complete(async move {
        let ctl = Rc::new(Ctl::default());
        let (_stop, server) = spawn_server(Server::new(), l, &ctl);
        let tcp = TcpStream::connect_addr(addr).await.unwrap();
        let mut send = http1_handshake::<_, Full<Bytes>>(tcp).await.unwrap();
        let resp = send.send_request(get("/n/1")).await.unwrap();
        assert_eq!(body_string(resp).await, "n/1\n");
        // Cancelling the serve task drops the serve future: the idle
        // keep-alive connection is shut down, not left running.
        assert!(server.cancel());
        let closed = ringloop::timeout(Duration::from_secs(10), async {
            while !send.is_closed() {
                ringloop::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(closed.is_ok(), "connection still open after serve was dropped");
        assert!(send.send_request(get("/n/2")).await.is_err());
    })
    .unwrap();
}

#[ringloop::test]
fn server_connection_over_unix_streams_both_protocols(lp: &EventLoop) {
    use ringloop::net::UnixStream;
    lp.run_until_complete(async move {
        let ctl = Rc::new(Ctl::default());
        for http2 in [false, true] {
            let (a, b) = UnixStream::pair().unwrap();
            let svc = svc!(ctl);
            // The protocol is found from the first bytes, so the client
            // must speak first: run both sides at once.
            let server = ringloop::spawn(async move { Server::new().connection(a, svc).await });
            let body = if http2 {
                let mut send = http2_handshake::<_, Full<Bytes>>(b).await.unwrap();
                let conn = server.await.unwrap().expect("h2 connection");
                assert!(conn.is_http2());
                let served = ringloop::spawn(conn);
                let resp = send.send_request(get("http://localhost/n/unix2")).await.unwrap();
                assert_eq!(resp.version(), Version::HTTP_2);
                let body = body_string(resp).await;
                drop(send);
                served.await.unwrap().expect("h2 connection result");
                body
            } else {
                let mut send = http1_handshake::<_, Full<Bytes>>(b).await.unwrap();
                let req = ringloop::spawn(async move {
                    let resp = send.send_request(get("/n/unix1")).await.unwrap();
                    body_string(resp).await
                });
                let conn = server.await.unwrap().expect("h1 connection");
                assert!(!conn.is_http2());
                let served = ringloop::spawn(conn);
                let body = req.await.unwrap();
                served.await.unwrap().expect("h1 connection result");
                body
            };
            assert_eq!(body, if http2 { "n/unix2\n" } else { "n/unix1\n" });
        }
    })
    .unwrap();
}

#[ringloop::test]
fn http1_only_server_rejects_h2_preface(lp: &EventLoop) {
    let (l, addr) = listener();
    lp.run_until_complete(async move {
        let ctl = Rc::new(Ctl::default());
        let (stop, server) = spawn_server(Server::new().http1_only(), l, &ctl);
        let tcp = TcpStream::connect_addr(addr).await.unwrap();
        let mut h2 = http2_handshake::<_, Full<Bytes>>(tcp).await.unwrap();
        assert!(h2.send_request(get("http://localhost/n/1")).await.is_err());
        stop.set();
        server.await.unwrap().expect("serve result");
    })
    .unwrap();
}

#[ringloop::test]
fn curl_http1_keep_alive_and_h2c(lp: &EventLoop) {
    if !have_tool("curl", &["--version"]) {
        eprintln!("SKIP: curl not installed");
        return;
    }
    let (l, addr) = listener();
    lp.run_until_complete(async move {
        let ctl = Rc::new(Ctl::default());
        let (stop, server) = spawn_server(Server::new(), l, &ctl);
        let base = format!("http://{addr}");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--http1.1", "-w", "%{http_version} %{num_connects}\\n"])
            .arg(format!("{base}/n/a"))
            .arg(format!("{base}/n/b"))
            .args(["--data-binary", "posted body"])
            .arg(format!("{base}/echo"));
        let (ok, out, err) = run_tool(cmd).await;
        assert!(ok, "curl failed: {err}");
        // The 2nd and 3rd transfers reuse the connection (0 connects).
        assert_eq!(out, "n/a\n1.1 1\nn/b\n1.1 0\nposted body1.1 0\n", "stderr: {err}");
        if curl_has_http2() {
            let mut cmd = Command::new("curl");
            cmd.args(["-sS", "--http2-prior-knowledge", "-w", "%{http_version}\\n"])
                .arg(format!("{base}/n/h2"));
            let (ok, out, err) = run_tool(cmd).await;
            assert!(ok, "curl h2c failed: {err}");
            assert_eq!(out, "n/h2\n2\n");
        } else {
            eprintln!("SKIP: this curl has no HTTP/2");
        }
        stop.set();
        server.await.unwrap().expect("serve result");
    })
    .unwrap();
}

#[ringloop::test]
fn python_http_client_keep_alive(lp: &EventLoop) {
    if !have_tool("python3", &["-c", "import http.client"]) {
        eprintln!("SKIP: python3 not installed");
        return;
    }
    let (l, addr) = listener();
    lp.run_until_complete(async move {
        // The free function `serve` (default configuration).
        let ctl = Rc::new(Ctl::default());
        let stop = Rc::new(Event::new());
        let s = stop.clone();
        let svc = svc!(ctl);
        let server = ringloop::spawn(async move { serve(&l, svc, async move { s.wait().await }).await });
        let script = "import http.client, sys\n\
            conn = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]))\n\
            socks = set()\n\
            for i in range(3):\n\
            \x20   conn.request('GET', '/n/%d' % i)\n\
            \x20   r = conn.getresponse()\n\
            \x20   print(r.status, r.version, r.read().decode().strip())\n\
            \x20   socks.add(id(conn.sock))\n\
            body = bytes(range(256)) * 400\n\
            conn.request('POST', '/echo', body=body)\n\
            r = conn.getresponse()\n\
            print(r.status, r.read() == body)\n\
            socks.add(id(conn.sock))\n\
            print('connections', len(socks))\n";
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(script).arg(addr.port().to_string());
        let (ok, out, err) = run_tool(cmd).await;
        assert!(ok, "python failed: {err}");
        assert_eq!(out, "200 11 n/0\n200 11 n/1\n200 11 n/2\n200 True\nconnections 1\n");
        stop.set();
        server.await.unwrap().expect("serve result");
    })
    .unwrap();
}

#[ringloop::test(virtual_clock)]
fn header_read_timeout_runs_on_the_virtual_clock(lp: &EventLoop) {
    let (l, addr) = listener();
    let t0 = lp.time();
    let (partial, silent) = lp
        .run_until_complete(async move {
            let ctl = Rc::new(Ctl::default());
            let server = Server::new().header_read_timeout(Duration::from_secs(30));
            let (stop, server) = spawn_server(server, l, &ctl);
            // A client that stops in the middle of its request head.
            let partial = ringloop::spawn(async move {
                let mut tcp = TcpStream::connect_addr(addr).await.unwrap();
                tcp.write_all(b"GET /n/1 HTTP/1.1\r\nHost: x\r\n").await.unwrap();
                let start = ringloop::current().unwrap().time();
                let mut rest = Vec::new();
                let _ = tcp.read_to_end(&mut rest).await;
                ringloop::current().unwrap().time() - start
            });
            // A client that sends nothing at all.
            let silent = ringloop::spawn(async move {
                let mut tcp = TcpStream::connect_addr(addr).await.unwrap();
                let start = ringloop::current().unwrap().time();
                let mut rest = Vec::new();
                let _ = tcp.read_to_end(&mut rest).await;
                ringloop::current().unwrap().time() - start
            });
            let r = (partial.await.unwrap(), silent.await.unwrap());
            stop.set();
            server.await.unwrap().expect("serve result");
            r
        })
        .unwrap();
    // hyper's timer is the loop clock: the virtual clock jumped 30 s.
    for (what, waited) in [("partial head", partial), ("silent client", silent)] {
        assert!(waited >= Duration::from_secs(30), "{what}: closed after {waited:?}");
        assert!(waited < Duration::from_secs(31), "{what}: closed after {waited:?}");
    }
    assert!(lp.time() - t0 >= Duration::from_secs(30));
}

#[ringloop::test(virtual_clock)]
fn graceful_timeout_cancels_stuck_connections(lp: &EventLoop) {
    let (l, addr) = listener();
    let t0 = lp.time();
    let (waited, result) = lp
        .run_until_complete(async move {
            let ctl = Rc::new(Ctl::default());
            let server = Server::new().graceful_timeout(Duration::from_secs(5));
            let (stop, server) = spawn_server(server, l, &ctl);
            let tcp = TcpStream::connect_addr(addr).await.unwrap();
            let mut h1 = http1_handshake::<_, Full<Bytes>>(tcp).await.unwrap();
            let req = ringloop::spawn(async move { h1.send_request(get("/wait")).await.map(drop) });
            ctl.started.wait().await;
            let start = ringloop::current().unwrap().time();
            stop.set();
            server.await.unwrap().expect("serve result");
            let waited = ringloop::current().unwrap().time() - start;
            (waited, req.await.unwrap())
        })
        .unwrap();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    assert!(result.is_err(), "the cancelled request cannot succeed");
    assert!(lp.time() - t0 >= Duration::from_secs(5));
}

#[ringloop::test(virtual_clock)]
fn loop_timer_is_the_loop_clock(lp: &EventLoop) {
    use hyper::rt::Timer;
    let t = ringloop::hyper::LoopTimer;
    lp.run_until_complete(async move {
        let lp = ringloop::current().unwrap();
        assert_eq!(t.now(), lp.time());
        let before = lp.time();
        t.sleep(Duration::from_secs(3600)).await;
        assert!(lp.time() - before >= Duration::from_secs(3600));
        let deadline = lp.time() + Duration::from_secs(60);
        let mut s = t.sleep_until(deadline);
        t.reset(&mut s, deadline + Duration::from_secs(60));
        s.await;
        assert!(lp.time() >= deadline + Duration::from_secs(60));
        assert_eq!(t.now(), lp.time());
    })
    .unwrap();
}

#[cfg(feature = "tls")]
mod https {
    use super::*;
    use crate::certs::TestPki;
    use ringloop::hyper::serve_tls;

    #[ringloop::test]
    fn https_alpn_picks_http2_or_http1(lp: &ringloop::EventLoop) {
        let pki = TestPki::new();
        let (l, addr) = listener();
        let acceptor = pki.acceptor(&[b"h2", b"http/1.1"]);
        let h2c = pki.connector(&[b"h2"]);
        let h1c = pki.connector(&[b"http/1.1"]);
        lp.run_until_complete(async move {
            let ctl = Rc::new(Ctl::default());
            let stop = Rc::new(Event::new());
            let s = stop.clone();
            let svc = svc!(ctl);
            let server =
                ringloop::spawn(async move { serve_tls(&l, acceptor, svc, async move { s.wait().await }).await });
            let tls = h2c
                .connect("localhost", TcpStream::connect_addr(addr).await.unwrap())
                .await
                .unwrap();
            assert_eq!(tls.alpn_protocol(), Some(&b"h2"[..]));
            let mut send = http2_handshake::<_, Full<Bytes>>(tls).await.unwrap();
            let resp = send.send_request(get("https://localhost/n/2")).await.unwrap();
            assert_eq!(resp.version(), Version::HTTP_2);
            assert_eq!(body_string(resp).await, "n/2\n");
            let data = pattern(1 << 20);
            let req = Request::post("https://localhost/echo")
                .body(Full::new(Bytes::from(data.clone())))
                .unwrap();
            let got = send
                .send_request(req)
                .await
                .unwrap()
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes();
            assert!(got[..] == data[..], "h2 1 MiB echo differs");

            let tls = h1c
                .connect("localhost", TcpStream::connect_addr(addr).await.unwrap())
                .await
                .unwrap();
            let mut send = http1_handshake::<_, Full<Bytes>>(tls).await.unwrap();
            for i in 0..20 {
                let resp = send.send_request(get(&format!("/n/{i}"))).await.unwrap();
                assert_eq!(resp.version(), Version::HTTP_11);
                assert_eq!(body_string(resp).await, format!("n/{i}\n"));
            }
            let req = Request::post("/echo")
                .header(HOST, "localhost")
                .body(Full::new(Bytes::from(data.clone())))
                .unwrap();
            let got = send
                .send_request(req)
                .await
                .unwrap()
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes();
            assert!(got[..] == data[..], "h1 1 MiB echo differs");
            stop.set();
            server.await.unwrap().expect("serve result");
        })
        .unwrap();
    }

    #[ringloop::test]
    fn curl_https(lp: &ringloop::EventLoop) {
        if !have_tool("curl", &["--version"]) {
            eprintln!("SKIP: curl not installed");
            return;
        }
        let pki = TestPki::new();
        let (l, addr) = listener();
        let acceptor = pki.acceptor(&[b"h2", b"http/1.1"]);
        let ca = pki.ca_path();
        lp.run_until_complete(async move {
            let ctl = Rc::new(Ctl::default());
            let stop = Rc::new(Event::new());
            let s = stop.clone();
            let svc = svc!(ctl);
            let server =
                ringloop::spawn(async move { serve_tls(&l, acceptor, svc, async move { s.wait().await }).await });
            let url = format!("https://localhost:{}/n/tls", addr.port());
            let resolve = format!("localhost:{}:127.0.0.1", addr.port());
            let mut versions = vec![("--http1.1", "1.1")];
            if curl_has_http2() {
                versions.push(("--http2", "2"));
            }
            for (flag, want) in versions {
                let mut cmd = Command::new("curl");
                cmd.args([
                    "-sS",
                    flag,
                    "--resolve",
                    &resolve,
                    "-w",
                    "%{http_version}\\n",
                    "--cacert",
                ])
                .arg(&ca)
                .arg(&url);
                let (ok, out, err) = run_tool(cmd).await;
                assert!(ok, "curl {flag} failed: {err}");
                assert_eq!(out, format!("n/tls\n{want}\n"));
            }
            stop.set();
            server.await.unwrap().expect("serve result");
        })
        .unwrap();
    }
}
