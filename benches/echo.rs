//! TCP echo over loopback: ringloop (io_uring), ringloop (readiness
//! fallback) and tokio current_thread as servers, one shared load generator.
//!
//! ```text
//! cargo bench --bench echo                 # full run (3 rounds)
//! cargo bench --bench echo -- --quick      # 1 round, short windows
//! ```
//!
//! Method: the server runs on its own thread pinned to CPU 0, the load
//! generator (a tokio current_thread runtime, the same for every server) on
//! the calling thread pinned to CPU 1 (`sched_setaffinity`; skipped with a
//! note when fewer than 2 CPUs). Servers are interleaved within each round;
//! medians over rounds are reported with ratios against tokio. Workloads:
//!
//! * `rtt_1conn_128B`: one connection, 128-byte messages, one at a time:
//!   median and p99 round-trip latency.
//! * `tput_64conn_128B`: 64 connections, each a closed loop of 128-byte
//!   round trips, for a fixed window: requests per second, and the server
//!   thread's CPU time per request (utime+stime from
//!   `/proc/self/task/<tid>/stat`), the figure that separates runtimes when
//!   the load generator saturates first.
//!
//! Every echoed byte is verified. Without `--bench` (under `cargo test
//! --benches`) each workload runs once at a tiny size as a smoke test.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ringloop::{AsyncReadOwned, AsyncWriteOwned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MSG: usize = 128;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    RingloopUring,
    RingloopFallback,
    Tokio,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::RingloopUring => "ringloop/uring",
            Server::RingloopFallback => "ringloop/fallback",
            Server::Tokio => "tokio-ct",
        }
    }
}

fn pin_to(cpu: usize) -> bool {
    // SAFETY: `cpu_set_t` is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE (checked by the caller: 0 or 1).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pins the calling thread (pid 0) with a valid set.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

fn gettid() -> i64 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// utime + stime of a thread of this process, in clock ticks.
fn thread_cpu_ticks(tid: i64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3; utime 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ut: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let st: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ut + st
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf with a valid name.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

struct Running {
    addr: SocketAddr,
    tid: i64,
    stop: Box<dyn FnOnce() + Send>,
    thread: thread::JoinHandle<()>,
}

async fn ringloop_conn(stream: ringloop::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        buf.clear();
        let (res, b) = stream.read(buf).await;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (res, b) = stream.write_all(b).await;
        if res.is_err() {
            return;
        }
        buf = b;
    }
}

fn start_server(kind: Server, pin: bool) -> io::Result<Running> {
    let (tx, rx) = mpsc::channel::<io::Result<(SocketAddr, i64, Box<dyn FnOnce() + Send>)>>();
    let thread = thread::spawn(move || {
        if pin {
            pin_to(0);
        }
        let tid = gettid();
        match kind {
            Server::RingloopUring | Server::RingloopFallback => {
                let choice = if kind == Server::RingloopUring {
                    ringloop::DriverChoice::Uring
                } else {
                    ringloop::DriverChoice::Fallback
                };
                let lp = match ringloop::EventLoop::builder().driver(choice).build() {
                    Ok(lp) => lp,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let handle = lp.handle();
                let tx2 = tx.clone();
                let _ = lp.run_until_complete(async move {
                    let l = match ringloop::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = tx2.send(Err(e));
                            return;
                        }
                    };
                    let addr = l.local_addr().unwrap();
                    let stop: Box<dyn FnOnce() + Send> = Box::new(move || {
                        let _ = handle.stop();
                    });
                    let _ = tx2.send(Ok((addr, tid, stop)));
                    while let Ok((s, _)) = l.accept().await {
                        ringloop::spawn(ringloop_conn(s)).detach();
                    }
                });
            }
            Server::Tokio => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                rt.block_on(async move {
                    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = l.local_addr().unwrap();
                    let stop: Box<dyn FnOnce() + Send> = Box::new(move || {
                        let _ = stop_tx.send(());
                    });
                    let _ = tx.send(Ok((addr, tid, stop)));
                    let accept = async {
                        while let Ok((mut s, _)) = l.accept().await {
                            tokio::spawn(async move {
                                let _ = s.set_nodelay(true);
                                let mut buf = vec![0u8; 16 * 1024];
                                loop {
                                    let n = match s.read(&mut buf).await {
                                        Ok(0) | Err(_) => return,
                                        Ok(n) => n,
                                    };
                                    if s.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            });
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stop_rx => {}
                    }
                });
            }
        }
    });
    let (addr, tid, stop) = rx.recv().map_err(|_| io::Error::other("server thread died"))??;
    Ok(Running {
        addr,
        tid,
        stop,
        thread,
    })
}

fn check(i: usize, got: &[u8]) {
    for (j, b) in got.iter().enumerate() {
        assert_eq!(*b, (i.wrapping_mul(31).wrapping_add(j)) as u8, "echo corrupted");
    }
}

fn fill(i: usize, buf: &mut [u8]) {
    for (j, b) in buf.iter_mut().enumerate() {
        *b = (i.wrapping_mul(31).wrapping_add(j)) as u8;
    }
}

/// Median and p99 round trip over `n` sequential messages on one connection.
async fn rtt(addr: SocketAddr, n: usize) -> (Duration, Duration) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut out = [0u8; MSG];
    let mut back = [0u8; MSG];
    let mut rtts = Vec::with_capacity(n);
    for i in 0..n {
        fill(i, &mut out);
        let t = Instant::now();
        s.write_all(&out).await.unwrap();
        s.read_exact(&mut back).await.unwrap();
        rtts.push(t.elapsed());
        check(i, &back);
    }
    rtts.sort();
    (rtts[n / 2], rtts[(n * 99 / 100).min(n - 1)])
}

/// Requests per second over `window` with `conns` closed-loop connections.
async fn throughput(addr: SocketAddr, conns: usize, window: Duration) -> u64 {
    let deadline = Instant::now() + window;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        tasks.push(tokio::task::spawn_local(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut out = [0u8; MSG];
            let mut back = [0u8; MSG];
            let mut done = 0u64;
            let mut i = 0usize;
            while Instant::now() < deadline {
                fill(i, &mut out);
                s.write_all(&out).await.unwrap();
                s.read_exact(&mut back).await.unwrap();
                check(i, &back);
                done += 1;
                i += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

struct Sample {
    rtt_p50: Duration,
    rtt_p99: Duration,
    rps: f64,
    cpu_us_per_req: f64,
    client_cpu_share: f64,
}

fn measure(kind: Server, pin: bool, rtt_n: usize, window: Duration) -> io::Result<Sample> {
    let srv = start_server(kind, pin)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let addr = srv.addr;
    let (p50, p99) = local.block_on(&rt, rtt(addr, rtt_n));
    // Warm-up of the throughput path, then the measured window.
    local.block_on(&rt, throughput(addr, 64, window / 4));
    let me = gettid();
    let (s0, c0, t0) = (thread_cpu_ticks(srv.tid), thread_cpu_ticks(me), Instant::now());
    let reqs = local.block_on(&rt, throughput(addr, 64, window));
    let (s1, c1, wall) = (thread_cpu_ticks(srv.tid), thread_cpu_ticks(me), t0.elapsed());
    (srv.stop)();
    // Wake the server's accept loop so it observes the stop promptly.
    let _ = std::net::TcpStream::connect(addr);
    let _ = srv.thread.join();
    let tps = ticks_per_sec();
    Ok(Sample {
        rtt_p50: p50,
        rtt_p99: p99,
        rps: reqs as f64 / wall.as_secs_f64(),
        cpu_us_per_req: (s1 - s0) as f64 / tps * 1e6 / reqs.max(1) as f64,
        client_cpu_share: (c1 - c0) as f64 / tps / wall.as_secs_f64(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick");
    let (rounds, rtt_n, window) = if !bench {
        (1, 50, Duration::from_millis(100))
    } else if quick {
        (1, 2_000, Duration::from_millis(700))
    } else {
        (3, 10_000, Duration::from_secs(2))
    };
    let cpus = thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let pin = cpus >= 2;
    if pin {
        pin_to(1);
    } else {
        println!("note: fewer than 2 CPUs, not pinning");
    }
    let servers = [Server::RingloopUring, Server::RingloopFallback, Server::Tokio];
    let mut samples: Vec<Vec<Sample>> = servers.iter().map(|_| Vec::new()).collect();
    let mut errors: Vec<Option<String>> = servers.iter().map(|_| None).collect();
    for round in 0..rounds {
        for (i, &s) in servers.iter().enumerate() {
            match measure(s, pin, rtt_n, window) {
                Ok(x) => samples[i].push(x),
                Err(e) => errors[i] = Some(e.to_string()),
            }
        }
        if bench {
            eprintln!("round {} of {rounds} done", round + 1);
        }
    }
    println!(
        "\nTCP echo, {MSG} B messages, server on CPU 0, load generator (tokio current_thread) on CPU 1; \
         medians of {rounds} round(s)\n"
    );
    println!(
        "| server | 1-conn RTT p50 | 1-conn RTT p99 | 64-conn req/s | server CPU µs/req | ratio CPU/req vs tokio | load-gen CPU |"
    );
    println!("|---|---|---|---|---|---|---|");
    let tokio_cpu = samples[2].iter().map(|s| s.cpu_us_per_req).collect::<Vec<_>>();
    let tokio_cpu = if tokio_cpu.is_empty() {
        f64::NAN
    } else {
        median(tokio_cpu)
    };
    for (i, s) in servers.iter().enumerate() {
        if let Some(e) = &errors[i] {
            println!("| {} | unavailable: {e} | | | | | |", s.name());
            continue;
        }
        let v = &samples[i];
        let p50 = median(v.iter().map(|x| x.rtt_p50.as_secs_f64() * 1e6).collect());
        let p99 = median(v.iter().map(|x| x.rtt_p99.as_secs_f64() * 1e6).collect());
        let rps = median(v.iter().map(|x| x.rps).collect());
        let cpu = median(v.iter().map(|x| x.cpu_us_per_req).collect());
        let client = median(v.iter().map(|x| x.client_cpu_share).collect());
        println!(
            "| {} | {p50:.1} µs | {p99:.1} µs | {rps:.0} | {cpu:.2} | {:.2} | {:.0}% |",
            s.name(),
            cpu / tokio_cpu,
            client * 100.0
        );
    }
    if !bench {
        println!("(smoke run: tiny sizes, figures meaningless)");
    }
}
