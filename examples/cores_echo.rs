//! TCP echo server on N loops, one per core (thread-per-core).
//!
//! ```sh
//! cargo run --release --example cores_echo -- 127.0.0.1:7000 --loops 4 --pin
//! cargo run --example cores_echo -- --self-test 200
//! ```
//!
//! Every loop binds its own listener on the same address with
//! `SO_REUSEPORT` (the group is bound in loop order before the loops start,
//! so with `--pin` loop `i` is on CPU `i` and `--steer` can attach the
//! classic-BPF program that hands each connection to the socket of the CPU
//! that received it). The kernel spreads the connections; each loop serves
//! its own with one task per connection. Ctrl+C shuts every loop down: they
//! stop accepting and the runtime returns.
//!
//! `--self-test N` binds an ephemeral port, connects N times from a client
//! thread, checks every echo, shuts down and prints how the connections
//! were spread (used by the examples test).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};

use futures_util::future::{Either, select};
use ringloop::AsyncWriteOwned;
use ringloop::cores::{self, Pinning};
use ringloop::net::{TcpListener, TcpStream, reuseport_tcp_listeners};

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut chunks = stream.recv_stream();
    while let Some(Ok(chunk)) = chunks.next_buf().await {
        if stream.write_all(chunk).await.0.is_err() {
            return;
        }
    }
}

/// Accepts until shutdown is requested; returns how many were accepted.
async fn accept_loop(listener: TcpListener) -> usize {
    let handle = cores::handle().expect("runs on a cores loop");
    let mut accepted = 0;
    loop {
        let stop = pin!(handle.shutdown_requested());
        match select(pin!(listener.accept()), stop).await {
            Either::Left((Ok((stream, _)), _)) => {
                accepted += 1;
                ringloop::spawn(serve(stream)).detach();
            }
            Either::Left((Err(e), _)) => {
                eprintln!("accept: {e}");
                ringloop::sleep(std::time::Duration::from_millis(10)).await;
            }
            Either::Right(_) => return accepted,
        }
    }
}

fn client(addr: SocketAddr, n: usize) -> std::io::Result<()> {
    for i in 0..n {
        let mut c = std::net::TcpStream::connect(addr)?;
        let msg = format!("hello {i}");
        c.write_all(msg.as_bytes())?;
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back)?;
        if back != msg.as_bytes() {
            return Err(std::io::Error::other(format!("bad echo for {msg:?}")));
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr: SocketAddr = "127.0.0.1:7000".parse()?;
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
        println!("echo server on {addr}, {n} loops (Ctrl+C stops)");
    }
    let counts = builder.run(move |idx| {
        let std_listener = listeners.lock().unwrap()[idx.get()]
            .take()
            .expect("one listener per loop");
        async move {
            let listener = TcpListener::from_std(std_listener).expect("adopting the listener");
            if let (0, Some(conns)) = (idx.get(), self_test) {
                let handle = cores::handle().expect("runs on a cores loop");
                std::thread::spawn(move || {
                    if let Err(e) = client(addr, conns) {
                        eprintln!("client: {e}");
                    }
                    handle.shutdown();
                });
            }
            accept_loop(listener).await
        }
    })?;
    let counts: Vec<usize> = counts.into_iter().map(|c| c.unwrap_or(0)).collect();
    let total: usize = counts.iter().sum();
    if self_test.is_some() {
        println!("served {total} connections on {n} loops");
        println!("every loop served some: {}", counts.iter().all(|&c| c > 0));
    } else {
        println!("served {total} connections, per loop: {counts:?}");
    }
    Ok(())
}
