//! ringloop on N io_uring loops (`ringloop::cores`, thread-per-core): TCP
//! echo and HTTP with one `SO_REUSEPORT` listener per loop, the kernel
//! spreading the connections; each loop serves its own connections with the
//! same per-connection code as `ringloop/uring` ([`super::ringloop_peer`]).
//! Peer names `ringloop/uring-<N>loops` ([`loops_of`]).

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};

use ringloop::cores::{self, Pinning};

use super::ringloop_peer;

/// The loop count of a multi-loop peer name (`ringloop/uring-2loops` → 2).
pub fn loops_of(name: &str) -> Option<usize> {
    name.strip_prefix("ringloop/uring-")?
        .strip_suffix("loops")?
        .parse()
        .ok()
        .filter(|&n| n >= 1)
}

/// Serves `proto` (`echo` or `http`) on `n` loops until killed; loop `i`
/// pinned to `cpus[i % cpus.len()]` unless `cpus` is empty. `ready(port)`
/// runs once every loop is up (so a runtime that cannot start is an error,
/// not a port that nobody serves).
pub fn serve(n: usize, proto: &str, cpus: &[usize], ready: impl FnOnce(u16) + Send + 'static) -> io::Result<()> {
    match proto {
        "echo" => run(n, cpus, ready, ringloop_peer::echo),
        "http" => run(n, cpus, ready, ringloop_peer::hello),
        _ => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "skipped: the multi-loop peer serves TCP (echo, HTTP) only",
        )),
    }
}

fn run<Fut: Future<Output = ()> + 'static>(
    n: usize,
    cpus: &[usize],
    ready: impl FnOnce(u16) + Send + 'static,
    conn: fn(ringloop::net::TcpStream) -> Fut,
) -> io::Result<()> {
    let addr = "127.0.0.1:0".parse().unwrap();
    let listeners = ringloop::net::reuseport_tcp_listeners(addr, n, 1024, false)?;
    let port = listeners[0].local_addr()?.port();
    let listeners = Arc::new(Mutex::new(listeners.into_iter().map(Some).collect::<Vec<_>>()));
    let mut b = cores::Builder::new()
        .driver(ringloop::DriverChoice::Uring)
        .loops(n)
        .thread_name("server");
    if !cpus.is_empty() {
        b = b.pinning(Pinning::Cpus(cpus.to_vec()));
    }
    let ready = Mutex::new(Some(ready));
    let out = b.run(move |idx| {
        let l = listeners.lock().unwrap()[idx.get()].take();
        let ready = ready.lock().unwrap().take();
        async move {
            let l = ringloop::net::TcpListener::from_std(l.ok_or_else(|| io::Error::other("no listener"))?)?;
            // Every loop is built once any factory runs; connections wait in
            // the listeners' backlogs until their loop accepts.
            if let Some(ready) = ready {
                ready(port);
            }
            loop {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                ringloop::spawn(conn(s)).detach();
            }
        }
    });
    match out {
        Ok(v) => v.into_iter().flatten().collect::<io::Result<Vec<()>>>().map(|_| ()),
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}
