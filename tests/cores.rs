//! The multi-loop runtime (`ringloop::cores`): many loops, spawn_on,
//! cross-loop channels, shutdown, panics, per-loop SO_REUSEPORT listeners.
//!
//! Each multi-loop test builds its own runtime once per backend
//! (`<test>::uring`, `<test>::fallback`). They run one at a time (a
//! process-wide lock): the fd-count test needs a quiet process, and the
//! machine's cores are shared.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::{Either, select};
use ringloop::cores::{self, CoresError, channel};
use ringloop::net::{TcpListener, UdpSocket, reuseport_tcp_listeners};
use ringloop::prelude::*;
use ringloop::{DriverChoice, EventLoop};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `choice` can build a loop here; prints a skip line when not
/// (io_uring unavailable, or compiled out by the `fallback` feature),
/// fails instead under `RINGLOOP_REQUIRE_URING=1` when it should work.
fn available(choice: DriverChoice, name: &str) -> bool {
    match EventLoop::builder().driver(choice).build() {
        Ok(_) => true,
        Err(e) => {
            assert!(
                !(common::require_uring() && choice == DriverChoice::Uring && !e.to_string().contains("fallback")),
                "{name}: io_uring required but unavailable: {e}"
            );
            println!("SKIP [{choice:?}] {name}: {e}");
            false
        }
    }
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn uring() {
                let _g = super::serial();
                if super::available(ringloop::DriverChoice::Uring, stringify!($name)) {
                    super::$name(ringloop::DriverChoice::Uring);
                }
            }
            #[test]
            fn fallback() {
                let _g = super::serial();
                if super::available(ringloop::DriverChoice::Fallback, stringify!($name)) {
                    super::$name(ringloop::DriverChoice::Fallback);
                }
            }
        }
    };
}

fn rt(choice: DriverChoice, loops: usize) -> cores::Builder {
    cores::Builder::new()
        .loops(loops)
        .driver(choice)
        .thread_name("rl-test")
        .shutdown_timeout(Duration::from_secs(10))
}

/// Per-loop std listeners of one reuseport group, handed out by index.
type Listeners = Arc<Mutex<Vec<Option<std::net::TcpListener>>>>;

fn group(n: usize) -> (Listeners, SocketAddr) {
    let ls = reuseport_tcp_listeners("127.0.0.1:0".parse().unwrap(), n, 1024, false).unwrap();
    let addr = ls[0].local_addr().unwrap();
    (Arc::new(Mutex::new(ls.into_iter().map(Some).collect())), addr)
}

fn take(ls: &Listeners, i: usize) -> TcpListener {
    TcpListener::from_std(ls.lock().unwrap()[i].take().unwrap()).unwrap()
}

/// Accepts until shutdown is requested; returns the accepted connections'
/// count; `serve` handles each one (spawned).
async fn accept_until_shutdown<S, Fut>(l: TcpListener, serve: S) -> usize
where
    S: Fn(ringloop::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let h = cores::handle().unwrap();
    let mut n = 0;
    loop {
        let stop = pin!(h.shutdown_requested());
        let acc = pin!(l.accept());
        match select(acc, stop).await {
            Either::Left((Ok((s, _)), _)) => {
                n += 1;
                ringloop::spawn(serve(s)).detach();
            }
            Either::Left((Err(e), _)) => panic!("accept: {e}"),
            Either::Right(_) => return n,
        }
    }
}

async fn echo_one_byte(s: ringloop::net::TcpStream) {
    let (r, b) = s.read(vec![0u8; 1]).await;
    if r.is_ok_and(|n| n == 1) {
        let _ = s.write_all(b).await;
    }
}

// ------------------------------------------------------------ connections

fn n_loops_serve_1000_connections(choice: DriverChoice) {
    const LOOPS: usize = 4;
    const CONNS: usize = 1000;
    let (ls, addr) = group(LOOPS);
    let out = rt(choice, LOOPS)
        .run(move |idx| {
            let l = take(&ls, idx.get());
            async move {
                if idx.get() == 0 {
                    let h = cores::handle().unwrap();
                    // The client: CONNS sequential connections, each from a
                    // new ephemeral source port, then shutdown.
                    std::thread::spawn(move || {
                        for _ in 0..CONNS {
                            let mut c = std::net::TcpStream::connect(addr).unwrap();
                            c.write_all(b"x").unwrap();
                            let mut b = [0u8; 1];
                            c.read_exact(&mut b).unwrap();
                            assert_eq!(&b, b"x");
                        }
                        h.shutdown();
                    });
                }
                accept_until_shutdown(l, echo_one_byte).await
            }
        })
        .unwrap();
    let counts: Vec<usize> = out.into_iter().map(Option::unwrap).collect();
    assert_eq!(counts.iter().sum::<usize>(), CONNS, "{counts:?}");
    assert!(counts.iter().all(|&c| c > 0), "every loop served some: {counts:?}");
}
both!(n_loops_serve_1000_connections);

// ------------------------------------------------------------ spawn_on

fn spawn_on_runs_on_the_named_loop(choice: DriverChoice) {
    const LOOPS: usize = 3;
    let out = rt(choice, LOOPS)
        .run(|idx| async move {
            let h = cores::handle().unwrap();
            assert_eq!(cores::current_index(), Some(idx.get()));
            if idx.get() != 1 {
                return Vec::new();
            }
            let mut seen = Vec::new();
            for i in 0..LOOPS {
                let t = h
                    .spawn_on(i, async move {
                        ringloop::sleep(Duration::from_millis(1)).await;
                        (
                            std::thread::current().name().map(str::to_string),
                            cores::current_index(),
                            i,
                        )
                    })
                    .unwrap();
                seen.push(t.await.unwrap());
            }
            // Round robin covers every loop once per LOOPS spawns.
            let mut rr = Vec::new();
            for _ in 0..LOOPS {
                rr.push(
                    h.spawn_balanced(async { cores::current_index().unwrap() })
                        .unwrap()
                        .await
                        .unwrap(),
                );
            }
            rr.sort();
            assert_eq!(rr, (0..LOOPS).collect::<Vec<_>>());
            assert!(matches!(
                h.spawn_on(LOOPS, async {}),
                Err(CoresError::NoSuchLoop {
                    index: LOOPS,
                    count: LOOPS
                })
            ));
            seen
        })
        .unwrap();
    let seen = out[1].clone().unwrap();
    assert_eq!(seen.len(), LOOPS);
    for (name, index, i) in seen {
        assert_eq!(name.as_deref(), Some(format!("rl-test-{i}").as_str()));
        assert_eq!(index, Some(i));
    }
}
both!(spawn_on_runs_on_the_named_loop);

// ------------------------------------------------------------ channels

const MESSAGES: u64 = 1_000_000;

fn channel_delivers_all_in_sender_order(choice: DriverChoice, bounded: bool) {
    const SENDERS: u64 = 2;
    let (tx, rx) = if bounded {
        channel::bounded(1024)
    } else {
        channel::unbounded()
    };
    let rx = Arc::new(Mutex::new(Some(rx)));
    // One sender per sending loop, taken by it: when both are done the
    // receiver sees the end of the stream.
    let txs = Arc::new(Mutex::new(vec![None, Some(tx.clone()), Some(tx)]));
    let out = rt(choice, 1 + SENDERS as usize)
        .run(move |idx| {
            let rx = if idx.get() == 0 {
                rx.lock().unwrap().take()
            } else {
                None
            };
            let tx = txs.lock().unwrap()[idx.get()].take();
            async move {
                if let Some(mut rx) = rx {
                    let mut next = [0u64; SENDERS as usize];
                    let mut total = 0u64;
                    while let Some((s, seq)) = rx.recv().await {
                        assert_eq!(seq, next[s as usize], "sender {s} out of order");
                        next[s as usize] += 1;
                        total += 1;
                    }
                    return total;
                }
                let tx = tx.unwrap();
                let me = idx.get() as u64 - 1;
                for seq in 0..MESSAGES / SENDERS {
                    if bounded {
                        tx.send((me, seq)).await.unwrap();
                    } else {
                        tx.try_send((me, seq)).unwrap();
                        if seq % 4096 == 0 {
                            ringloop::yield_now().await;
                        }
                    }
                }
                0
            }
        })
        .unwrap();
    assert_eq!(out[0], Some(MESSAGES));
}

fn unbounded_channel_delivers_all(choice: DriverChoice) {
    channel_delivers_all_in_sender_order(choice, false)
}
both!(unbounded_channel_delivers_all);

fn bounded_channel_delivers_all(choice: DriverChoice) {
    channel_delivers_all_in_sender_order(choice, true)
}
both!(bounded_channel_delivers_all);
