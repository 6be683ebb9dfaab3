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

// ------------------------------------------------------------ wake-up

fn loop_asleep_on_a_long_timer_wakes_on_a_message(choice: DriverChoice) {
    let (tx, rx) = channel::unbounded::<Instant>();
    let rx = Arc::new(Mutex::new(Some(rx)));
    let tx = Arc::new(Mutex::new(Some(tx)));
    let out = rt(choice, 2)
        .run(move |idx| {
            let rx = if idx.get() == 0 {
                rx.lock().unwrap().take()
            } else {
                None
            };
            let tx = if idx.get() == 1 {
                tx.lock().unwrap().take()
            } else {
                None
            };
            async move {
                if let Some(mut rx) = rx {
                    let timer = pin!(ringloop::sleep(Duration::from_secs(10)));
                    let msg = pin!(rx.recv());
                    return match select(msg, timer).await {
                        Either::Left((Some(sent), _)) => Some(sent.elapsed()),
                        _ => None,
                    };
                }
                // Let loop 0 block in its wait first.
                ringloop::sleep(Duration::from_millis(100)).await;
                tx.unwrap().send(Instant::now()).await.unwrap();
                None
            }
        })
        .unwrap();
    let latency = out[0]
        .unwrap()
        .expect("the message, not the 10 s timer, ended the wait");
    assert!(latency < Duration::from_millis(100), "woke after {latency:?}");
}
both!(loop_asleep_on_a_long_timer_wakes_on_a_message);

// ------------------------------------------------------------ shutdown

fn shutdown_with_connections_in_flight_closes_every_fd(choice: DriverChoice) {
    const LOOPS: usize = 2;
    const CONNS: usize = 20;
    let baseline = common::open_fds();
    let (ls, addr) = group(LOOPS);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let done_rx = Arc::new(Mutex::new(Some(done_rx)));
    // The echo tasks never end by themselves: dropped at the deadline.
    let out = rt(choice, LOOPS)
        .shutdown_timeout(Duration::from_millis(300))
        .run(move |idx| {
            let l = take(&ls, idx.get());
            let done_rx = done_rx.lock().unwrap().take();
            async move {
                if let Some(done_rx) = done_rx {
                    let h = cores::handle().unwrap();
                    std::thread::spawn(move || {
                        // Connections that stay open, each with a byte
                        // echoed back so it was accepted and is served.
                        let mut cs = Vec::new();
                        for _ in 0..CONNS {
                            let mut c = std::net::TcpStream::connect(addr).unwrap();
                            c.write_all(b"y").unwrap();
                            let mut b = [0u8; 1];
                            c.read_exact(&mut b).unwrap();
                            cs.push(c);
                        }
                        h.shutdown();
                        // Keep them open until the runtime returned.
                        let _ = done_rx.recv();
                        drop(cs);
                    });
                }
                accept_until_shutdown(l, |s| async move {
                    // Echo forever: in flight until the loop closes.
                    common::net::echo_connection(s).await
                })
                .await
            }
        })
        .unwrap();
    assert_eq!(out.iter().map(|c| c.unwrap()).sum::<usize>(), CONNS);
    drop(done_tx);
    // The client thread closes its sockets after the channel closes.
    let deadline = Instant::now() + Duration::from_secs(5);
    while common::open_fds() != baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(common::open_fds(), baseline);
}
both!(shutdown_with_connections_in_flight_closes_every_fd);

fn main_future_ignoring_shutdown_is_dropped_at_the_timeout(choice: DriverChoice) {
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = dropped.clone();
    let out = rt(choice, 2)
        .shutdown_timeout(Duration::from_millis(100))
        .run(move |idx| {
            struct OnDrop(Arc<std::sync::atomic::AtomicBool>);
            impl Drop for OnDrop {
                fn drop(&mut self) {
                    self.0.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
            let guard = OnDrop(d.clone());
            async move {
                if idx.get() == 0 {
                    let _guard = guard;
                    ringloop::sleep(Duration::from_secs(3600)).await;
                    return 0;
                }
                cores::handle().unwrap().shutdown();
                assert!(matches!(
                    cores::handle().unwrap().spawn_on(0, async {}),
                    Err(CoresError::ShuttingDown)
                ));
                1
            }
        })
        .unwrap();
    assert_eq!(out, vec![None, Some(1)]);
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
}
both!(main_future_ignoring_shutdown_is_dropped_at_the_timeout);

fn a_panicking_loop_is_reported_and_the_others_stop(choice: DriverChoice) {
    let started = Instant::now();
    let res = rt(choice, 3)
        .shutdown_timeout(Duration::from_millis(200))
        .run(|idx| async move {
            match idx.get() {
                1 => {
                    ringloop::sleep(Duration::from_millis(20)).await;
                    panic!("boom on loop one");
                }
                // Stops when asked.
                0 => cores::handle().unwrap().shutdown_requested().await,
                // Ignores the request: dropped at the timeout.
                _ => ringloop::sleep(Duration::from_secs(3600)).await,
            }
        });
    match res {
        Err(CoresError::Panicked { index: 1, message }) => assert!(message.contains("boom on loop one"), "{message}"),
        other => panic!("expected loop 1's panic, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(60), "no loop hung");
}
both!(a_panicking_loop_is_reported_and_the_others_stop);

fn ctrl_c_requests_shutdown(choice: DriverChoice) {
    let out = rt(choice, 2)
        .ctrl_c(true)
        .run(|idx| async move {
            if idx.get() == 1 {
                // The runtime's handler was installed before any loop ran
                // this code, so the process survives.
                assert_eq!(kill_self_with_sigint(), 0);
            }
            cores::handle().unwrap().shutdown_requested().await;
            idx.get()
        })
        .unwrap();
    assert_eq!(out, vec![Some(0), Some(1)]);
}
both!(ctrl_c_requests_shutdown);

fn kill_self_with_sigint() -> i32 {
    unsafe extern "C" {
        fn getpid() -> i32;
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: plain syscalls without pointers; SIGINT is 2 on every Unix.
    unsafe { kill(getpid(), 2) }
}

fn pinned_loops_run_on_their_cpus(choice: DriverChoice) {
    let cpus = cores::allowed_cpus().unwrap();
    let want: Vec<usize> = (0..2).map(|i| cpus[i % cpus.len()]).collect();
    let out = rt(choice, 2)
        .pinning(cores::Pinning::Cpus(want.clone()))
        .run(|_| async { cores::current_cpu() })
        .unwrap();
    let got: Vec<usize> = out.into_iter().map(|c| c.unwrap().unwrap()).collect();
    assert_eq!(got, want);
    // An impossible CPU is a setup error naming the loop; nothing runs.
    let err = rt(choice, 2)
        .pinning(cores::Pinning::Cpus(vec![cpus[0], 100_000]))
        .run(|_| async {})
        .unwrap_err();
    assert!(matches!(err, CoresError::Build { index: 1, .. }), "{err:?}");
}
both!(pinned_loops_run_on_their_cpus);

// ------------------------------------------------------------ reuseport (one loop)

#[ringloop::test]
fn udp_sockets_share_a_port_with_reuse_port(lp: &EventLoop) {
    let _g = serial();
    lp.run_until_complete(async {
        let a = UdpSocket::bind_with("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = a.local_addr().unwrap();
        let b = UdpSocket::bind_with(addr, true).unwrap();
        assert_eq!(b.local_addr().unwrap(), addr);
        // Without SO_REUSEPORT the port is taken.
        let err = UdpSocket::bind_with(addr, false).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        // Datagrams to the group reach one of its sockets.
        let c = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        c.send_to(b"ping".to_vec(), addr).await.0.unwrap();
        let ra = pin!(a.recv_from(vec![0u8; 16]));
        let rb = pin!(b.recv_from(vec![0u8; 16]));
        let (n, buf) = match select(ra, rb).await {
            Either::Left(((r, buf), _)) | Either::Right(((r, buf), _)) => (r.unwrap().0, buf),
        };
        assert_eq!(&buf[..n], b"ping");
    })
    .unwrap();
}

#[ringloop::test]
fn cpu_steering_attaches_to_reuseport_groups(lp: &EventLoop) {
    let _g = serial();
    lp.run_until_complete(async {
        let ls = reuseport_tcp_listeners("127.0.0.1:0".parse().unwrap(), 2, 128, true).unwrap();
        assert_eq!(ls[0].local_addr().unwrap(), ls[1].local_addr().unwrap());
        let u = UdpSocket::bind_with("127.0.0.1:0".parse().unwrap(), true).unwrap();
        ringloop::net::attach_reuseport_cpu_steering(&u).unwrap();
        // Adopted listeners still accept.
        let l = TcpListener::from_std(ls.into_iter().next().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let c = std::thread::spawn(move || std::net::TcpStream::connect(addr).map(drop));
        let (s, _) = l.accept().await.unwrap();
        drop(s);
        c.join().unwrap().unwrap();
    })
    .unwrap();
}

// ------------------------------------------------------------ wake paths

/// Two loops play ping-pong over two channels; returns the round trips.
fn ping_pong(b: cores::Builder, rounds: u64) -> u64 {
    let (to1, from0) = channel::unbounded::<u64>();
    let (to0, from1) = channel::unbounded::<u64>();
    let ends = Arc::new(Mutex::new(vec![Some((to1, from1)), Some((to0, from0))]));
    let out = b
        .loops(2)
        .run(move |idx| {
            let (tx, mut rx) = ends.lock().unwrap()[idx.get()].take().unwrap();
            async move {
                let mut done = 0;
                if idx.get() == 0 {
                    for i in 0..rounds {
                        tx.send(i).await.unwrap();
                        assert_eq!(rx.recv().await, Some(i));
                        done += 1;
                    }
                } else {
                    while let Some(i) = rx.recv().await {
                        tx.send(i).await.unwrap();
                        done += 1;
                        if done == rounds {
                            break;
                        }
                    }
                }
                done
            }
        })
        .unwrap();
    assert_eq!(out, vec![Some(rounds), Some(rounds)]);
    rounds
}

fn msg_ring_wakes_io_uring_loops_without_eventfd(choice: DriverChoice) {
    let before = cores::wake_counts();
    ping_pong(rt(choice, 2), 2000);
    let after = cores::wake_counts();
    if choice != DriverChoice::Uring {
        return;
    }
    let probe = EventLoop::builder().driver(DriverChoice::Uring).build().unwrap();
    let msg_ring_on = probe.driver_description().contains("MSG_RING wake");
    drop(probe);
    if !msg_ring_on {
        println!(
            "SKIP msg_ring assertions: {}",
            EventLoop::new().unwrap().driver_description()
        );
        return;
    }
    assert!(after.sent_msg_ring > before.sent_msg_ring, "{before:?} -> {after:?}");
    assert!(
        after.received_msg_ring > before.received_msg_ring,
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        after.sent_eventfd, before.sent_eventfd,
        "no eventfd write: {before:?} -> {after:?}"
    );
    assert_eq!(
        after.received_eventfd, before.received_eventfd,
        "no eventfd read: {before:?} -> {after:?}"
    );
}
both!(msg_ring_wakes_io_uring_loops_without_eventfd);

fn eventfd_path_when_msg_ring_is_off(choice: DriverChoice) {
    let mut f = ringloop::UringFeatures::all();
    f.msg_ring = false;
    let before = cores::wake_counts();
    ping_pong(rt(choice, 2).uring_features(f), 2000);
    let after = cores::wake_counts();
    assert_eq!(after.sent_msg_ring, before.sent_msg_ring, "{before:?} -> {after:?}");
    assert_eq!(
        after.received_msg_ring, before.received_msg_ring,
        "{before:?} -> {after:?}"
    );
    if choice == DriverChoice::Uring {
        assert!(after.sent_eventfd > before.sent_eventfd, "{before:?} -> {after:?}");
        assert!(
            after.received_eventfd > before.received_eventfd,
            "{before:?} -> {after:?}"
        );
    }
}
both!(eventfd_path_when_msg_ring_is_off);

fn call_soon_threadsafe_from_a_loop_thread_wakes_the_target(choice: DriverChoice) {
    let before = cores::wake_counts();
    let out = rt(choice, 2)
        .run(|idx| async move {
            let h = cores::handle().unwrap();
            if idx.get() == 1 {
                // Loop 0 is asleep in its wait by now; wake it with a callback.
                ringloop::sleep(Duration::from_millis(50)).await;
                let (tx, rx) = std::sync::mpsc::channel();
                let sent = Instant::now();
                h.loop_handle(0)
                    .unwrap()
                    .call_soon_threadsafe(move || {
                        tx.send((cores::current_index(), sent.elapsed())).unwrap();
                        cores::handle().unwrap().shutdown();
                    })
                    .unwrap();
                return Some(rx);
            }
            h.shutdown_requested().await;
            None
        })
        .unwrap();
    let (ran_on, latency) = out[1].as_ref().unwrap().as_ref().unwrap().recv().unwrap();
    assert_eq!(ran_on, Some(0));
    assert!(latency < Duration::from_millis(100), "ran after {latency:?}");
    let after = cores::wake_counts();
    let probe = EventLoop::builder().driver(DriverChoice::Uring).build();
    if choice == DriverChoice::Uring && probe.is_ok_and(|lp| lp.driver_description().contains("MSG_RING wake")) {
        assert!(after.sent_msg_ring > before.sent_msg_ring, "{before:?} -> {after:?}");
        assert_eq!(after.sent_eventfd, before.sent_eventfd, "{before:?} -> {after:?}");
    }
}
both!(call_soon_threadsafe_from_a_loop_thread_wakes_the_target);

fn tasks_in_flight_finish_within_the_shutdown_deadline(choice: DriverChoice) {
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let f = finished.clone();
    rt(choice, 2)
        .run(move |idx| {
            let f = f.clone();
            async move {
                let h = cores::handle().unwrap();
                // Work that outlives the main future: it finishes after the
                // shutdown request, well within the 10 s deadline.
                ringloop::spawn(async move {
                    cores::handle().unwrap().shutdown_requested().await;
                    ringloop::sleep(Duration::from_millis(50)).await;
                    f.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                })
                .detach();
                if idx.get() == 1 {
                    ringloop::sleep(Duration::from_millis(20)).await;
                    h.shutdown();
                }
                h.shutdown_requested().await;
            }
        })
        .unwrap();
    assert_eq!(finished.load(std::sync::atomic::Ordering::SeqCst), 2);
}
both!(tasks_in_flight_finish_within_the_shutdown_deadline);

/// Pins the calling thread to `cpu`.
fn pin_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and
    // sched_setaffinity get a live local of the right size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

/// With the CPU-steering program attached, a connection made from CPU `k`
/// (loopback packets are processed on the sending CPU) is accepted by
/// socket `k` of the group, i.e. loop `k` pinned to CPU `k`. (Without it the
/// kernel's hash spreads them: e.g. 25/15 in a run with steering off.)
fn cpu_steering_sends_each_connection_to_the_loop_on_its_cpu(choice: DriverChoice) {
    const PER_CPU: usize = 20;
    let cpus = cores::allowed_cpus().unwrap();
    if !(cpus.contains(&0) && cpus.contains(&1)) {
        println!("SKIP: CPUs 0 and 1 are not both allowed ({cpus:?})");
        return;
    }
    let ls = reuseport_tcp_listeners("127.0.0.1:0".parse().unwrap(), 2, 1024, true).unwrap();
    let addr = ls[0].local_addr().unwrap();
    let ls: Listeners = Arc::new(Mutex::new(ls.into_iter().map(Some).collect()));
    let out = rt(choice, 2)
        .pinning(cores::Pinning::Cpus(vec![0, 1]))
        .run(move |idx| {
            let l = take(&ls, idx.get());
            async move {
                if idx.get() == 0 {
                    let h = cores::handle().unwrap();
                    std::thread::spawn(move || {
                        for cpu in [1, 0] {
                            pin_thread(cpu);
                            for _ in 0..PER_CPU {
                                let mut c = std::net::TcpStream::connect(addr).unwrap();
                                c.write_all(b"z").unwrap();
                                let mut b = [0u8; 1];
                                c.read_exact(&mut b).unwrap();
                            }
                        }
                        h.shutdown();
                    });
                }
                accept_until_shutdown(l, echo_one_byte).await
            }
        })
        .unwrap();
    assert_eq!(out, vec![Some(PER_CPU), Some(PER_CPU)]);
}
both!(cpu_steering_sends_each_connection_to_the_loop_on_its_cpu);
