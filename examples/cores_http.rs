//! HTTP/1.1 server on N loops, one per core (thread-per-core), keep-alive,
//! no HTTP library: a minimal responder over ringloop TCP.
//!
//! ```sh
//! cargo run --release --example cores_http -- 127.0.0.1:8080 --loops 4 --pin
//! curl -v http://127.0.0.1:8080/        # "hello from loop 2"
//! cargo run --example cores_http -- --self-test 100
//! ```
//!
//! Every loop binds its own listener on the same address with
//! `SO_REUSEPORT` (the kernel spreads the connections; `--steer` with
//! `--pin` hands each to the loop on the CPU that received it) and serves
//! its connections with one task each. A connection reads request heads
//! (up to 8 KiB, a `Content-Length` body is read and dropped), answers
//! `GET` and `HEAD` with `200` and a body naming the loop, anything else
//! with `405`, pipelined requests in order, and stays open until the
//! client closes it or sends `Connection: close` (HTTP/1.0: unless
//! `keep-alive`). Ctrl+C shuts every loop down.
//!
//! `--self-test N` binds an ephemeral port, opens N connections from a
//! client thread, sends three requests on each (two of them pipelined in
//! one write, the last with `Connection: close`), checks every response
//! byte, shuts down and prints how the requests were spread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};

use futures_util::future::{Either, select};
use ringloop::cores::{self, Pinning};
use ringloop::net::{TcpListener, TcpStream, reuseport_tcp_listeners};
use ringloop::{AsyncReadOwned, AsyncWriteOwned};

/// Longest request head accepted.
const MAX_HEAD: usize = 8 * 1024;

/// One parsed request head.
struct Head {
    method: String,
    keep_alive: bool,
    body_len: usize,
}

/// Parses the head in `buf[..end]` (without the final blank line).
fn parse_head(head: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, _target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let mut keep_alive = version == "HTTP/1.1";
    let mut body_len = 0;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            body_len = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return None; // chunked bodies are not supported by this example
        }
    }
    Some(Head {
        method: method.to_string(),
        keep_alive,
        body_len,
    })
}

/// The response to `head` on loop `index`.
fn respond(head: &Head, index: usize, out: &mut Vec<u8>) {
    let (status, body) = match head.method.as_str() {
        "GET" | "HEAD" => ("200 OK", format!("hello from loop {index}\n")),
        _ => ("405 Method Not Allowed", "only GET and HEAD\n".to_string()),
    };
    let conn = if head.keep_alive { "keep-alive" } else { "close" };
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    if head.method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Serves one connection: answers every complete request in `input`,
/// writes the answers, reads more; ends on EOF, error, or a request that
/// does not keep the connection alive.
async fn serve(stream: TcpStream, index: usize) {
    let _ = stream.set_nodelay(true);
    let mut input: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(256);
    let mut skip = 0; // body bytes still to drop
    loop {
        let mut close = false;
        loop {
            if skip > 0 {
                let n = skip.min(input.len());
                input.drain(..n);
                skip -= n;
                if skip > 0 {
                    break;
                }
            }
            let Some(end) = find_head_end(&input) else {
                if input.len() > MAX_HEAD {
                    out.extend_from_slice(
                        b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    close = true;
                }
                break;
            };
            match parse_head(&input[..end]) {
                Some(head) => {
                    respond(&head, index, &mut out);
                    input.drain(..end + 4);
                    skip = head.body_len;
                    if !head.keep_alive {
                        close = true;
                        break;
                    }
                }
                None => {
                    out.extend_from_slice(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    close = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            let (res, o) = stream.write_all(out).await;
            out = o;
            out.clear();
            if res.is_err() {
                return;
            }
        }
        if close {
            return;
        }
        // Reads append into the spare capacity after the buffered bytes.
        input.reserve(4096);
        let (res, buf) = stream.read(input).await;
        input = buf;
        if !matches!(res, Ok(n) if n > 0) {
            return;
        }
    }
}

/// Accepts until shutdown is requested; returns how many were accepted.
async fn accept_loop(listener: TcpListener, index: usize) -> usize {
    let handle = cores::handle().expect("runs on a cores loop");
    let mut accepted = 0;
    loop {
        let stop = pin!(handle.shutdown_requested());
        match select(pin!(listener.accept()), stop).await {
            Either::Left((Ok((stream, _)), _)) => {
                accepted += 1;
                ringloop::spawn(serve(stream, index)).detach();
            }
            Either::Left((Err(e), _)) => {
                eprintln!("accept: {e}");
                ringloop::sleep(std::time::Duration::from_millis(10)).await;
            }
            Either::Right(_) => return accepted,
        }
    }
}

/// Reads one response; returns the loop named by its body.
fn read_response(r: &mut impl BufRead, head_only: bool, expect_conn: &str) -> std::io::Result<usize> {
    let bad = |what: String| std::io::Error::other(what);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line != "HTTP/1.1 200 OK\r\n" {
        return Err(bad(format!("status line {line:?}")));
    }
    let mut len = None;
    let mut conn = None;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        if line == "\r\n" {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| bad(format!("header {line:?}")))?;
        match name {
            "Content-Length" => len = value.trim().parse::<usize>().ok(),
            "Connection" => conn = Some(value.trim().to_string()),
            "Content-Type" => {}
            _ => return Err(bad(format!("unexpected header {line:?}"))),
        }
    }
    if conn.as_deref() != Some(expect_conn) {
        return Err(bad(format!("Connection: {conn:?}, want {expect_conn}")));
    }
    let len = len.ok_or_else(|| bad("no Content-Length".into()))?;
    if head_only {
        return Ok(usize::MAX);
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let body = String::from_utf8(body).map_err(|_| bad("body not UTF-8".into()))?;
    body.strip_prefix("hello from loop ")
        .and_then(|b| b.strip_suffix('\n'))
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| bad(format!("body {body:?}")))
}

/// N connections, three requests each; returns requests answered per loop.
fn client(addr: SocketAddr, n: usize, loops: usize) -> std::io::Result<Vec<usize>> {
    let mut per_loop = vec![0; loops];
    for _ in 0..n {
        let mut c = std::net::TcpStream::connect(addr)?;
        // Two pipelined requests in one write (one GET, one HEAD) ...
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD /x HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut r = BufReader::new(c.try_clone()?);
        let first = read_response(&mut r, false, "keep-alive")?;
        read_response(&mut r, true, "keep-alive")?;
        // ... then one with a body to skip, closing the connection.
        c.write_all(b"GET / HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")?;
        let last = read_response(&mut r, false, "close")?;
        let mut rest = Vec::new();
        r.read_to_end(&mut rest)?;
        if first != last || first >= loops || !rest.is_empty() {
            return Err(std::io::Error::other(format!(
                "loops {first} and {last} answered one connection, then {} stray bytes",
                rest.len()
            )));
        }
        per_loop[first] += 3;
    }
    Ok(per_loop)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr: SocketAddr = "127.0.0.1:8080".parse()?;
    let mut loops = None;
    let mut pin = false;
    let mut steer = false;
    let mut self_test = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--loops" => loops = Some(args.next().ok_or("--loops N")?.parse()?),
            "--pin" => pin = true,
            "--steer" => steer = true,
            "--self-test" => self_test = Some(args.next().ok_or("--self-test N")?.parse::<usize>()?),
            other => addr = other.parse()?,
        }
    }
    if self_test.is_some() {
        addr = "127.0.0.1:0".parse()?;
    }
    let mut builder = cores::Builder::new().ctrl_c(self_test.is_none());
    if let Some(n) = loops.or(self_test.map(|_| 2)) {
        builder = builder.loops(n);
    }
    if pin {
        builder = builder.pinning(Pinning::On);
    }
    let n = builder.loop_count();
    let listeners = reuseport_tcp_listeners(addr, n, 1024, steer)?;
    let addr = listeners[0].local_addr()?;
    let listeners = Arc::new(Mutex::new(listeners.into_iter().map(Some).collect::<Vec<_>>()));
    if self_test.is_none() {
        println!("HTTP server on http://{addr}/, {n} loops (Ctrl+C stops)");
    }
    let answered: Arc<Mutex<Option<std::io::Result<Vec<usize>>>>> = Arc::default();
    let result = answered.clone();
    let accepted = builder.run(move |idx| {
        let std_listener = listeners.lock().unwrap()[idx.get()]
            .take()
            .expect("one listener per loop");
        let answered = answered.clone();
        async move {
            let listener = TcpListener::from_std(std_listener).expect("adopting the listener");
            if let (0, Some(conns)) = (idx.get(), self_test) {
                let handle = cores::handle().expect("runs on a cores loop");
                std::thread::spawn(move || {
                    *answered.lock().unwrap() = Some(client(addr, conns, idx.count()));
                    handle.shutdown();
                });
            }
            accept_loop(listener, idx.get()).await
        }
    })?;
    let accepted: Vec<usize> = accepted.into_iter().map(|c| c.unwrap_or(0)).collect();
    if let Some(conns) = self_test {
        let per_loop = result.lock().unwrap().take().ok_or("the client did not finish")??;
        println!(
            "answered {} requests on {conns} connections, {} loops",
            per_loop.iter().sum::<usize>(),
            per_loop.len()
        );
        println!("every loop answered some: {}", per_loop.iter().all(|&c| c > 0));
        println!(
            "accepted = answered / 3 on every loop: {}",
            per_loop.iter().zip(&accepted).all(|(a, c)| a / 3 == *c)
        );
    } else {
        println!(
            "served {} connections, per loop: {accepted:?}",
            accepted.iter().sum::<usize>()
        );
    }
    Ok(())
}
