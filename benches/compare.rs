//! Comparative suite: ringloop (io_uring and fallback backends, and on two
//! io_uring loops) against tokio current_thread, monoio, compio, and
//! hand-written io_uring and epoll loops (the ceilings), each server in its
//! own process; cross-loop ping-pong; plus file reads.
//!
//! ```text
//! cargo bench --bench compare -- --quick   # every peer, 7 closed-loop + 2 open-loop workloads, wrk, ping-pong, files; ~5 min
//! cargo bench --bench compare              # 15 closed-loop + 3 open-loop workloads, 3 rounds; ~30 min
//! cargo bench --bench compare -- --peers ringloop/uring,raw-uring --rounds 5
//! cargo bench --bench compare -- --quick --workloads 256x128B,http-64c --syscalls strace --no-files
//! cargo bench --bench compare -- --workloads pingpong --rounds 3 --no-files   # only the ping-pong rows
//! cargo bench --bench compare -- --server-cpus 0-7 --client-cpus 8-15 --peers ringloop/uring-8loops,ringloop/uring
//! ```
//!
//! Workloads (labels as in `--workloads`): TCP echo `<conns>x<size>`
//! (1/64/512 connections × 128 B/4 KiB/64 KiB, and 256 × 128 B), HTTP/1.1
//! keep-alive "hello" `http-<conns>c` (own load generator, and `wrk` when
//! installed), UDP ping-pong `udp-<clients>x<size>`, open-loop latency on
//! some of them, cross-loop ping-pong `pingpong` (`compare/pingpong.rs`),
//! and random 4 KiB file reads (`files/mod.rs`).
//!
//! Peers: `peers::ALL`. The hand-written io_uring ceilings are `raw-uring`
//! (default ring flags), `raw-uring-sq+dt` (SINGLE_ISSUER | DEFER_TASKRUN),
//! both one single-shot RECV or SEND in flight per connection, and
//! `raw-uring-ms` (SQ+DT, multishot accept, one multishot RECV per
//! connection from a provided-buffer ring; TCP only, its UDP rows say
//! `skipped:`, and so do all its rows on a kernel without multishot receive).
//! `ringloop/uring-2loops` (any `ringloop/uring-<N>loops` with `--peers`)
//! serves TCP on N io_uring loops of `ringloop::cores`, one `SO_REUSEPORT`
//! listener each; in quick mode it runs 64x128B and http-64c only.
//!
//! Method. The bench binary re-executes itself as `--serve <peer> --proto
//! <echo|http|udp> --cpus <list>`; the child pins itself to the server CPUs
//! (`--server-cpus`, default 0: a one-thread server to the first, loop `i`
//! of a multi-loop server to the `i`-th modulo their number), binds
//! 127.0.0.1:0 and prints its port. Load generators run in the parent, one
//! closed-loop load thread per load-generator CPU (`--client-cpus`, default
//! 1; the connections split between them), and verify every reply byte
//! (`compare/load.rs`). For each round and workload: every peer's server
//! started fresh and connected (one request in flight per connection), a
//! discarded warm-up window each, then the measured closed-loop window cut
//! into slices of about 200 ms that the peers take in turns (the order
//! rotated by one each turn and each round), their slices summed. The idle
//! servers wait in their loops meanwhile. Interleaving matters on a shared
//! host whose speed shifts every few seconds: measured one after the other,
//! each peer's window met a different host (rounds of the same peer 25%
//! apart); in turns, every peer sees the same mix. When the bench's
//! descriptor limit (raised to its hard limit) cannot hold every peer's
//! connections, the peers run in consecutive groups. The headline is the server's CPU time
//! per request (sum of the per-thread `/proc/<pid>/task/*/schedstat` run
//! times, i.e. utime+stime at nanosecond resolution), because on 2 loopback
//! cores the load generator saturates before a lean server does. Also
//! reported: req/s, context switches per request, kernel counts per request
//! (first round only, counted in an extra window; the server is idle while
//! the tool attaches and detaches) and the load generator's own CPU use
//! (its busiest thread; near 100% means it is the bottleneck). The kernel counts come from
//! `perf stat -x, -e raw_syscalls:sys_enter,io_uring:io_uring_submit_req,
//! io_uring:io_uring_poll_arm,io_uring:io_uring_queue_async_work -p
//! <server>`: syscalls, SQEs submitted, internal poll arms (a request that
//! found its socket not ready, so the kernel armed a poll and retries it
//! from task work on wake-up) and io-wq punts (requests handed to a kernel
//! worker thread); the io_uring ones are 0 for the readiness peers. When
//! the io_uring tracepoints are missing, only syscalls are counted (the
//! others say n/a); `strace -c -f -p` when perf cannot count syscalls at
//! all (syscalls only).
//!
//! Open loop: after the closed-loop rounds, each latency workload is offered
//! a fixed rate of 50% of tokio-ct's median closed-loop req/s on that
//! workload, by a generator (epoll, spinning for the last 30 µs before each send) that measures each request from
//! its scheduled send time (coordinated omission corrected); HdrHistogram
//! percentiles over all rounds. Then `wrk -t<load-generator CPUs>` against
//! each HTTP server when `wrk` is installed (skipped with a note otherwise),
//! then the cross-loop ping-pong rows (each in its own child process,
//! `--pingpong <row>`, threads pinned to `--pingpong-cpus`, default the
//! first server CPU and the first load-generator CPU other than it; 5 000 round trips in
//! quick mode, 100 000 otherwise, `--pingpong-trips N`), then the file
//! reads. Medians over rounds. Writes `target/ringloop-bench/compare.{md,json,svg}`.
//!
//! Without `--bench` (under `cargo test --bench compare`) a tiny smoke
//! configuration runs so the code cannot rot (including `raw-uring-ms`,
//! the two-loop peer and every ping-pong row, and self-checks of the HTTP,
//! wrk, perf/strace, CPU-list and ping-pong output parsers); it writes
//! `compare-smoke.*`.

#[path = "files/mod.rs"]
mod files;
#[path = "compare/load.rs"]
mod load;
#[path = "compare/peers/mod.rs"]
mod peers;
#[path = "compare/pingpong.rs"]
mod pingpong;
#[path = "compare/report.rs"]
mod report;
#[path = "compare/sys.rs"]
mod sys;

use std::io::{self, BufRead, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use report::{LatRow, Report, Row, Sample, WrkRow};
use sys::{SysCount, SysTool};

/// What a server speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    Echo,
    Http,
    Udp,
}

impl Proto {
    fn arg(self) -> &'static str {
        match self {
            Proto::Echo => "echo",
            Proto::Http => "http",
            Proto::Udp => "udp",
        }
    }
}

/// One load shape: protocol, connections (or UDP clients), message size.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Workload {
    proto: Proto,
    conns: usize,
    size: usize,
}

const fn echo(conns: usize, size: usize) -> Workload {
    Workload {
        proto: Proto::Echo,
        conns,
        size,
    }
}

const fn http(conns: usize) -> Workload {
    Workload {
        proto: Proto::Http,
        conns,
        size: 0,
    }
}

const fn udp(conns: usize, size: usize) -> Workload {
    Workload {
        proto: Proto::Udp,
        conns,
        size,
    }
}

fn size_label(size: usize) -> String {
    if size >= 1024 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

impl Workload {
    fn label(&self) -> String {
        match self.proto {
            Proto::Echo => format!("{}x{}", self.conns, size_label(self.size)),
            Proto::Http => format!("http-{}c", self.conns),
            Proto::Udp => format!("udp-{}x{}", self.conns, size_label(self.size)),
        }
    }
}

/// Child mode: serve `name` until killed, reporting `PORT <n>` or `ERR <why>`.
/// `cpus`: the server CPUs (empty: unpinned); a one-thread peer pins itself
/// to the first, a multi-loop peer pins loop `i` to `cpus[i % len]`.
fn serve_child(name: &str, proto: &str, cpus: &[usize]) -> ! {
    // SAFETY: plain prctl; the server dies with the bench process, even if
    // the bench is killed before it can kill its server.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let loops = peers::cores_peer::loops_of(name);
    let pinned = match (cpus, loops) {
        ([], _) => true,
        (_, Some(_)) => sys::pin_to_set(cpus),
        ([first, ..], None) => sys::pin_to(*first),
    };
    if !pinned {
        println!("ERR sched_setaffinity(CPUs {}) refused", sys::fmt_cpus(cpus));
        std::process::exit(1);
    }
    let announce = |port: u16| {
        move || {
            println!("PORT {port}");
            let _ = io::Write::flush(&mut io::stdout());
        }
    };
    let res = match (proto, loops) {
        (_, Some(n)) => peers::cores_peer::serve(n, proto, cpus, move |port| announce(port)()),
        ("echo" | "http", None) => peers::listener().and_then(|l| {
            let port = l.local_addr()?.port();
            if proto == "echo" {
                peers::serve(name, l, announce(port))
            } else {
                peers::serve_http(name, l, announce(port))
            }
        }),
        ("udp", None) => peers::udp_socket().and_then(|s| {
            let port = s.local_addr()?.port();
            peers::serve_udp(name, s, announce(port))
        }),
        (other, None) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown protocol {other}"),
        )),
    };
    match res {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            println!("ERR {e}");
            std::process::exit(1);
        }
    }
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `name` serving `proto`, pinned to `cpus` (empty: unpinned).
    fn start(name: &str, proto: Proto, cpus: &[usize]) -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let cpus = if cpus.is_empty() {
            "none".to_string()
        } else {
            sys::fmt_cpus(cpus)
        };
        let mut child = Command::new(exe)
            .args(["--serve", name, "--proto", proto.arg(), "--cpus", &cpus])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        let mut out = io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        if let Some(p) = line.trim().strip_prefix("PORT ") {
            let port: u16 = p.parse().map_err(|_| format!("bad port line {line:?}"))?;
            Ok(Server {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            })
        } else {
            let mut rest = String::new();
            let _ = out.read_to_string(&mut rest);
            let _ = child.kill();
            let _ = child.wait();
            let msg = format!("{}{}", line.trim().trim_start_matches("ERR "), rest.trim());
            Err(if msg.is_empty() {
                "server exited without a port".into()
            } else {
                msg
            })
        }
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cfg {
    warm: Duration,
    window: Duration,
    sys_window: Duration,
    tool: SysTool,
    /// Whether the CPU lists below are in force.
    pin: bool,
    /// CPUs of the servers (empty when not pinned).
    server_cpus: Vec<usize>,
    /// CPUs of the load generators, one closed-loop load thread per CPU
    /// (empty when not pinned: one unpinned load thread).
    client_cpus: Vec<usize>,
    /// Client connections the bench process may hold at once (its
    /// descriptor limit, less a reserve).
    fd_budget: usize,
}

/// One closed-loop load thread: pinned to `cpu`, its own tokio
/// current_thread runtime, `conns` of the workload's connections. Reports
/// on `out` once connected, then runs one [`load::phase`] per duration
/// received on `cmds` and reports its verified round trips and its own CPU
/// time (ns); ends when `cmds` closes or a phase fails.
fn load_thread(
    cpu: Option<usize>,
    addr: SocketAddr,
    wl: Workload,
    conns: usize,
    cmds: mpsc::Receiver<Duration>,
    out: mpsc::Sender<io::Result<(u64, u64)>>,
) {
    if let Some(c) = cpu {
        let _ = sys::pin_to(c);
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = out.send(Err(e));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        match wl.proto {
            Proto::Echo => drive(load::connect_echo(addr, conns, wl.size).await, cmds, out).await,
            Proto::Http => drive(load::connect_http(addr, conns).await, cmds, out).await,
            Proto::Udp => drive(load::connect_udp(addr, conns, wl.size).await, cmds, out).await,
        }
    });
}

async fn drive<C: load::Client>(
    clients: io::Result<Vec<C>>,
    cmds: mpsc::Receiver<Duration>,
    out: mpsc::Sender<io::Result<(u64, u64)>>,
) {
    let mut clients = match clients {
        Ok(c) => c,
        Err(e) => {
            let _ = out.send(Err(e));
            return;
        }
    };
    let _ = out.send(Ok((0, 0)));
    // Between phases no client task exists, so blocking here stalls nothing.
    while let Ok(d) = cmds.recv() {
        let c0 = sys::self_cpu_ns();
        match load::phase(clients, d).await {
            Ok((c, n)) => {
                clients = c;
                let _ = out.send(Ok((n, sys::self_cpu_ns() - c0)));
            }
            Err(e) => {
                let _ = out.send(Err(e));
                return;
            }
        }
    }
}

/// The load threads of one closed-loop measurement.
struct Load {
    cmds: Vec<mpsc::Sender<Duration>>,
    out: mpsc::Receiver<io::Result<(u64, u64)>>,
}

impl Load {
    /// One thread per client CPU (at most one per connection), connected.
    fn start(addr: SocketAddr, wl: Workload, cfg: &Cfg) -> Result<Load, String> {
        let k = cfg.client_cpus.len().clamp(1, wl.conns.max(1));
        let (out_tx, out) = mpsc::channel();
        let mut cmds = Vec::with_capacity(k);
        for i in 0..k {
            let conns = wl.conns / k + usize::from(i < wl.conns % k);
            let (tx, rx) = mpsc::channel();
            cmds.push(tx);
            let cpu = cfg.client_cpus.get(i).copied();
            let out = out_tx.clone();
            std::thread::Builder::new()
                .name(format!("load-{i}"))
                .spawn(move || load_thread(cpu, addr, wl, conns, rx, out))
                .map_err(|e| format!("load thread: {e}"))?;
        }
        let l = Load { cmds, out };
        l.collect(Duration::from_secs(30))?;
        Ok(l)
    }
    /// Every thread's report: total round trips and the busiest thread's CPU ns.
    fn collect(&self, limit: Duration) -> Result<(u64, u64), String> {
        let deadline = Instant::now() + limit;
        let (mut reqs, mut cpu) = (0, 0);
        for _ in 0..self.cmds.len() {
            match self
                .out
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Ok((n, c))) => {
                    reqs += n;
                    cpu = cpu.max(c);
                }
                Ok(Err(e)) => return Err(format!("load failed: {e}")),
                Err(_) => return Err("timed out".into()),
            }
        }
        Ok((reqs, cpu))
    }
    /// Runs one phase of `d` on every thread at once.
    fn phase(&self, d: Duration) -> Result<(u64, u64), String> {
        for c in &self.cmds {
            c.send(d).map_err(|_| "load failed: a load thread ended".to_string())?;
        }
        self.collect(d + Duration::from_secs(30))
    }
}

/// The peers in the order round `round` measures them: rotated by one per
/// round, so that no peer always runs first in a workload (right after the
/// previous workload's servers were torn down) or always after the same
/// peer.
fn round_order<'a>(peers: &'a [&'static str], round: usize) -> impl Iterator<Item = &'a &'static str> {
    let k = round.checked_rem(peers.len()).unwrap_or(0);
    peers[k..].iter().chain(&peers[..k])
}

/// The length of one measured slice of a closed-loop window (about).
const SLICE: Duration = Duration::from_millis(200);

/// How a measured window of `window` is cut: the number of slices and the
/// length of each.
fn slicing(window: Duration) -> (u32, Duration) {
    let n = (window.as_millis() / SLICE.as_millis()).max(1) as u32;
    (n, window / n)
}

/// One peer's server and connected load threads in a closed-loop round,
/// and what its measured slices added up to.
struct Live {
    srv: Server,
    load: Load,
    cpu_ns: u64,
    ctxt: u64,
    busy_us: f64,
    wall: Duration,
    reqs: u64,
    lg_ns: u64,
}

impl Live {
    /// Starts `peer`'s server, connects the load and runs the discarded warm-up.
    fn start(peer: &str, wl: Workload, cfg: &Cfg) -> Result<Live, String> {
        let srv = Server::start(peer, wl.proto, &cfg.server_cpus)?;
        let load = Load::start(srv.addr, wl, cfg)?;
        load.phase(cfg.warm)?;
        Ok(Live {
            srv,
            load,
            cpu_ns: 0,
            ctxt: 0,
            busy_us: 0.0,
            wall: Duration::ZERO,
            reqs: 0,
            lg_ns: 0,
        })
    }

    /// One measured slice of `d`.
    fn slice(&mut self, d: Duration, cfg: &Cfg) -> Result<(), String> {
        let pid = self.srv.pid();
        let busy = || {
            if cfg.pin {
                sys::cores_busy_us(&cfg.server_cpus)
            } else {
                f64::NAN
            }
        };
        let (s0, x0, b0, t0) = (sys::proc_cpu_ns(pid), sys::proc_ctxt(pid), busy(), Instant::now());
        let (reqs, lg_ns) = self.load.phase(d)?;
        let (s1, x1, b1, wall) = (sys::proc_cpu_ns(pid), sys::proc_ctxt(pid), busy(), t0.elapsed());
        self.cpu_ns += s1.saturating_sub(s0);
        self.ctxt += x1.saturating_sub(x0);
        self.busy_us += b1 - b0;
        self.wall += wall;
        self.reqs += reqs;
        self.lg_ns += lg_ns;
        Ok(())
    }

    /// The round's sample, after (when `count_sys`) a kernel-counting window.
    fn finish(self, cfg: &Cfg, count_sys: bool) -> Result<Sample, String> {
        let mut k = sys::Counts::default();
        let mut k_reqs = 1.0;
        if count_sys && !cfg.sys_window.is_zero() {
            if let Some(counter) = SysCount::start(cfg.tool, self.srv.pid()) {
                // The server is idle while the tool attaches and detaches.
                std::thread::sleep(Duration::from_millis(300));
                let (r, _) = self.load.phase(cfg.sys_window)?;
                std::thread::sleep(Duration::from_millis(50));
                k = counter.stop();
                k_reqs = r.max(1) as f64;
            }
        }
        let reqs_f = self.reqs.max(1) as f64;
        let per_req = |n: Option<u64>| n.map(|n| n as f64 / k_reqs);
        let secs = self.wall.as_secs_f64().max(1e-9);
        Ok(Sample {
            rps: self.reqs as f64 / secs,
            cpu_us: self.cpu_ns as f64 / 1e3 / reqs_f,
            core_us: self.busy_us / reqs_f,
            ctxt: self.ctxt as f64 / reqs_f,
            sys: per_req(k.syscalls),
            sqes: per_req(k.sqes),
            poll_arms: per_req(k.poll_arms),
            punts: per_req(k.punts),
            lg_cpu: self.lg_ns as f64 / 1e9 / secs,
        })
    }
}

/// Closed loop, one round of `wl` for `peers` (in that order): every
/// server started and warmed up, then the measured window cut into slices
/// of about [`SLICE`] that the peers take in turns (the order rotated by
/// one each turn), so every peer is measured over the same stretch of time
/// and a host that changes speed every few seconds moves all of them
/// alike; then, when `count_sys`, each one's kernel-counting window. The
/// idle servers wait in their event loop meanwhile. When the load
/// generator's descriptor limit cannot hold every peer's connections at
/// once, the peers run in as many consecutive groups as needed.
fn measure_round(peers: &[&'static str], wl: Workload, cfg: &Cfg, count_sys: bool) -> Vec<Result<Sample, String>> {
    let group = (cfg.fd_budget / wl.conns.max(1)).clamp(1, peers.len().max(1));
    let (slices, slice) = slicing(cfg.window);
    let mut out = Vec::with_capacity(peers.len());
    for chunk in peers.chunks(group) {
        let mut live: Vec<Result<Live, String>> = chunk.iter().map(|peer| Live::start(peer, wl, cfg)).collect();
        for turn in 0..slices as usize {
            let n = live.len();
            for i in 0..n {
                let l = &mut live[(i + turn) % n];
                if let Ok(x) = l
                    && let Err(e) = x.slice(slice, cfg)
                {
                    // Dropping the server ends its load threads too.
                    *l = Err(e);
                }
            }
        }
        out.extend(live.into_iter().map(|l| l.and_then(|x| x.finish(cfg, count_sys))));
    }
    out
}

fn measure_open(
    peer: &str,
    wl: Workload,
    rate: f64,
    server_cpus: &[usize],
    (warm, window): (Duration, Duration),
) -> Result<load::OpenSample, String> {
    let proto = match wl.proto {
        Proto::Echo => load::OpenProto::Echo(wl.size),
        Proto::Http => load::OpenProto::Http,
        Proto::Udp => return Err("the open-loop generator speaks TCP only".into()),
    };
    let srv = Server::start(peer, wl.proto, server_cpus)?;
    load::open_loop(srv.addr, wl.conns, proto, rate, warm, window, srv.pid()).map_err(|e| format!("load failed: {e}"))
}

/// Everything a mode runs.
struct Plan {
    peers: Vec<&'static str>,
    closed: Vec<Workload>,
    open: Vec<Workload>,
    wrk: Vec<Workload>,
    rounds: usize,
    /// Closed loop (warm-up, window, syscall window) in ms.
    closed_ms: (u64, u64, u64),
    /// Open loop (warm-up, window) in ms.
    open_ms: (u64, u64),
    wrk_secs: u64,
    files: Option<files::Mode>,
    /// Workloads the multi-loop peers run (`None`: all of them).
    multi_loop: Option<Vec<Workload>>,
    /// Ping-pong rows.
    pingpong: Vec<&'static str>,
    /// Measured round trips per ping-pong run (0: no ping-pong section).
    pingpong_trips: usize,
}

fn plan(mode: &str) -> Plan {
    match mode {
        "smoke" => Plan {
            peers: vec![
                "ringloop/uring",
                "ringloop/fallback",
                "tokio-ct",
                "raw-uring-ms",
                "raw-epoll",
                "ringloop/uring-2loops",
            ],
            closed: vec![echo(4, 128), http(4), udp(2, 128)],
            open: vec![echo(4, 128), http(4)],
            wrk: vec![],
            rounds: 1,
            closed_ms: (50, 200, 0),
            open_ms: (50, 200),
            wrk_secs: 1,
            files: None,
            multi_loop: None,
            pingpong: pingpong::PEERS.to_vec(),
            pingpong_trips: 200,
        },
        "quick" => Plan {
            peers: peers::ALL.to_vec(),
            closed: vec![
                echo(1, 128),
                echo(64, 128),
                echo(256, 128),
                echo(512, 128),
                echo(64, 4096),
                http(64),
                udp(1, 128),
            ],
            open: vec![echo(1, 128), echo(64, 128)],
            wrk: vec![http(64)],
            rounds: 1,
            closed_ms: (300, 1500, 500),
            open_ms: (300, 2000),
            wrk_secs: 2,
            files: Some(files::Mode::Quick),
            // Two TCP workloads as the 1-vs-2-loop check: seconds, not minutes.
            multi_loop: Some(vec![echo(64, 128), http(64)]),
            pingpong: pingpong::PEERS.to_vec(),
            pingpong_trips: 5_000,
        },
        _ => {
            let mut closed = Vec::new();
            for c in [1, 64, 512] {
                for s in [128, 4096, 65536] {
                    closed.push(echo(c, s));
                }
                if c == 64 {
                    closed.push(echo(256, 128));
                }
            }
            closed.extend([http(1), http(64), http(512), udp(1, 128), udp(64, 128)]);
            Plan {
                peers: peers::ALL.to_vec(),
                closed,
                open: vec![echo(1, 128), echo(64, 128), http(64)],
                wrk: vec![http(64), http(512)],
                rounds: 3,
                closed_ms: (500, 2000, 500),
                open_ms: (500, 3000),
                wrk_secs: 3,
                files: Some(files::Mode::Full),
                multi_loop: None,
                pingpong: pingpong::PEERS.to_vec(),
                pingpong_trips: 100_000,
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let cpus_opt = |name: &str| -> Option<Vec<usize>> {
        let v = opt(name)?;
        if v == "none" {
            return Some(Vec::new());
        }
        match sys::parse_cpus(&v) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::exit(2);
            }
        }
    };
    if let Some(name) = opt("--serve") {
        serve_child(
            &name,
            opt("--proto").as_deref().unwrap_or("echo"),
            &cpus_opt("--cpus").unwrap_or_default(),
        );
    }
    if let Some(row) = opt("--pingpong") {
        let trips = opt("--trips").and_then(|n| n.parse().ok()).unwrap_or(1000);
        let cpus = cpus_opt("--cpus").unwrap_or_default();
        pingpong::child(&row, trips, (cpus.len() >= 2).then(|| [cpus[0], cpus[1]]));
    }
    let bench = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick");
    let mode = if !bench {
        "smoke"
    } else if quick {
        "quick"
    } else {
        "full"
    };
    if mode == "smoke" {
        // The pure parts are checked here so `cargo test` catches a broken parser.
        if let Err(e) = peers::http::self_check()
            .and_then(|_| load::self_check())
            .and_then(|_| sys::self_check())
            .and_then(|_| pingpong::self_check())
        {
            eprintln!("self-check failed: {e}");
            std::process::exit(1);
        }
    }
    let mut p = plan(mode);
    if let Some(sel) = opt("--peers") {
        let wanted: Vec<&str> = sel.split(',').collect();
        let mut keep: Vec<&'static str> = peers::ALL.iter().copied().filter(|x| wanted.contains(x)).collect();
        // Any `ringloop/uring-<N>loops`, not only the one in ALL.
        for w in &wanted {
            if peers::is_multi_loop(w) && !keep.contains(w) {
                keep.push(String::leak(w.to_string()));
            }
        }
        p.peers = keep;
        p.pingpong.retain(|x| wanted.contains(x));
    }
    if let Some(r) = opt("--rounds").and_then(|r| r.parse().ok()) {
        p.rounds = r;
    }
    if let Some(sel) = opt("--workloads") {
        let keep = |w: &Workload| sel.split(',').any(|s| s == w.label());
        p.closed.retain(keep);
        p.open.retain(keep);
        p.wrk.retain(keep);
        if !sel.split(',').any(|s| s == "pingpong") {
            p.pingpong.clear();
        }
    }
    if let Some(n) = opt("--pingpong-trips").and_then(|n| n.parse().ok()) {
        p.pingpong_trips = n;
    }
    if p.pingpong_trips == 0 {
        p.pingpong.clear();
    }
    if args.iter().any(|a| a == "--no-files") {
        p.files = None;
    }
    let (tool, tool_desc) = if p.closed_ms.2 == 0 {
        (SysTool::None, "not measured in smoke mode".to_string())
    } else {
        sys::probe_systool(opt("--syscalls").as_deref())
    };
    // CPU lists: by default the servers on CPU 0 and the load generators on
    // CPU 1 (with at least 2 CPUs).
    let server_cpus = cpus_opt("--server-cpus").unwrap_or_else(|| vec![0]);
    let client_cpus = cpus_opt("--client-cpus").unwrap_or_else(|| vec![1]);
    let explicit = opt("--server-cpus").is_some() || opt("--client-cpus").is_some();
    let pinned = !server_cpus.is_empty()
        && !client_cpus.is_empty()
        && (explicit || sys::cpus() >= 2)
        && sys::pin_to_set(&client_cpus);
    if explicit && !pinned && !server_cpus.is_empty() && !client_cpus.is_empty() {
        eprintln!("--server-cpus/--client-cpus: sched_setaffinity refused the client CPUs");
        std::process::exit(2);
    }
    if server_cpus.iter().any(|c| client_cpus.contains(c)) {
        eprintln!("warning: server and load-generator CPU lists overlap");
    }
    let cfg = Cfg {
        pin: pinned,
        warm: Duration::from_millis(p.closed_ms.0),
        window: Duration::from_millis(p.closed_ms.1),
        sys_window: Duration::from_millis(p.closed_ms.2),
        tool,
        server_cpus: if pinned { server_cpus } else { Vec::new() },
        client_cpus: if pinned { client_cpus } else { Vec::new() },
        fd_budget: sys::raise_nofile().saturating_sub(256),
    };
    // Ping-pong CPUs (`none`: unpinned).
    let pingpong_cpus: Option<[usize; 2]> = match cpus_opt("--pingpong-cpus") {
        Some(c) if c.len() >= 2 => Some([c[0], c[1]]),
        Some(c) if c.is_empty() => None,
        Some(_) => {
            eprintln!("--pingpong-cpus: two CPUs (A,B) or none");
            std::process::exit(2);
        }
        // The first server CPU and the first load-generator CPU other than it.
        None if cfg.pin => {
            let a = cfg.server_cpus[0];
            cfg.client_cpus.iter().find(|&&b| b != a).map(|&b| [a, b])
        }
        None => None,
    };
    let open_t = (Duration::from_millis(p.open_ms.0), Duration::from_millis(p.open_ms.1));
    let mach = sys::machine();
    let rounds = p.rounds;
    println!("# ringloop comparative suite ({mode} mode)\n");
    for (k, v) in &mach {
        println!("- {k}: {v}");
    }
    let placement = if pinned {
        format!(
            "servers in their own process pinned to CPU(s) {} (one-thread servers to the first, multi-loop servers one loop per CPU), load generators (every reply byte verified) pinned to CPU(s) {} (one closed-loop load thread per CPU)",
            sys::fmt_cpus(&cfg.server_cpus),
            sys::fmt_cpus(&cfg.client_cpus)
        )
    } else {
        "servers in their own process, load generators (every reply byte verified): not pinned (fewer than 2 CPUs, `none`, or sched_setaffinity refused)".to_string()
    };
    println!("- {placement}");
    println!(
        "- {rounds} round(s); closed loop: all peers' servers up at once, warm-up {:?} each discarded, measured window {:?} per peer taken in slices of {:?} in turns (order rotated each turn and round); open loop (peers one after the other, order rotated each round): warm-up {:?}, window {:?}",
        cfg.warm,
        cfg.window,
        slicing(cfg.window).1,
        open_t.0,
        open_t.1
    );
    println!("- syscalls: {tool_desc} (first round)\n");
    let started = Instant::now();
    // Whether `peer` runs workload `w` (multi-loop peers: a subset in quick mode).
    let runs = |peer: &str, w: &Workload| {
        !peers::is_multi_loop(peer) || p.multi_loop.as_ref().is_none_or(|only| only.contains(w))
    };

    // Closed loop.
    let mut rows: Vec<Row> = Vec::new();
    for w in &p.closed {
        for peer in p.peers.iter().filter(|x| runs(x, w)) {
            rows.push(Row {
                workload: w.label(),
                peer,
                samples: Vec::new(),
                error: None,
            });
        }
    }
    for round in 0..rounds {
        for w in &p.closed {
            let label = w.label();
            let order: Vec<&'static str> = round_order(&p.peers, round)
                .copied()
                .filter(|peer| {
                    rows.iter()
                        .any(|r| r.workload == label && r.peer == *peer && r.error.is_none())
                })
                .collect();
            for (peer, res) in order.iter().zip(measure_round(&order, *w, &cfg, round == 0)) {
                let Some(row) = rows.iter_mut().find(|r| r.workload == label && r.peer == *peer) else {
                    continue;
                };
                match res {
                    Ok(s) => row.samples.push(s),
                    Err(e) => {
                        eprintln!("{peer} {label}: {}", report::why(&e));
                        row.error = Some(e);
                    }
                }
            }
            eprintln!(
                "closed loop, round {}/{rounds}: {label} done ({:.0?} elapsed)",
                round + 1,
                started.elapsed()
            );
        }
    }

    // Open loop at half of tokio's closed-loop peak.
    let mut lat: Vec<LatRow> = Vec::new();
    for w in &p.open {
        let label = w.label();
        let peak = rows
            .iter()
            .find(|r| r.workload == label && r.peer == report::BASELINE && r.error.is_none() && !r.samples.is_empty())
            .map(|r| r.med(|s| s.rps));
        for peer in p.peers.iter().filter(|x| runs(x, w)) {
            lat.push(LatRow {
                workload: label.clone(),
                peer,
                rate: peak.map_or(f64::NAN, |x| x / 2.0),
                hist: None,
                achieved: Vec::new(),
                cpu_us: Vec::new(),
                error: peak
                    .is_none()
                    .then(|| format!("no closed-loop {} peak for {label} in this run", report::BASELINE)),
            });
        }
    }
    for round in 0..rounds {
        for w in &p.open {
            let label = w.label();
            for peer in round_order(&p.peers, round) {
                let Some(row) = lat.iter_mut().find(|r| r.workload == label && r.peer == *peer) else {
                    continue;
                };
                if row.error.is_some() {
                    continue;
                }
                match measure_open(peer, *w, row.rate, &cfg.server_cpus, open_t) {
                    Ok(s) => {
                        row.achieved.push(s.achieved);
                        row.cpu_us.push(s.cpu_us);
                        match &mut row.hist {
                            Some(h) => {
                                let _ = h.add(&s.hist);
                            }
                            None => row.hist = Some(s.hist),
                        }
                    }
                    Err(e) => {
                        eprintln!("{peer} open loop {label}: {}", report::why(&e));
                        row.error = Some(e);
                    }
                }
            }
            eprintln!(
                "open loop, round {}/{rounds}: {label} done ({:.0?} elapsed)",
                round + 1,
                started.elapsed()
            );
        }
    }

    // wrk.
    let wrk_skipped = if p.wrk.is_empty() {
        None
    } else {
        load::wrk_available().err()
    };
    let mut wrk_rows: Vec<WrkRow> = Vec::new();
    if wrk_skipped.is_none() {
        for w in &p.wrk {
            for peer in p.peers.iter().filter(|x| runs(x, w)) {
                wrk_rows.push(WrkRow {
                    workload: w.label(),
                    peer,
                    samples: Vec::new(),
                    error: None,
                });
            }
        }
        for round in 0..rounds {
            for w in &p.wrk {
                let label = w.label();
                for peer in round_order(&p.peers, round) {
                    let Some(row) = wrk_rows.iter_mut().find(|r| r.workload == label && r.peer == *peer) else {
                        continue;
                    };
                    if row.error.is_some() {
                        continue;
                    }
                    let threads = cfg.client_cpus.len().clamp(1, w.conns.max(1));
                    let res = Server::start(peer, Proto::Http, &cfg.server_cpus)
                        .and_then(|srv| load::wrk(srv.addr, w.conns, threads, p.wrk_secs, srv.pid()));
                    match res {
                        Ok(s) => row.samples.push(s),
                        Err(e) => {
                            eprintln!("{peer} wrk {label}: {}", report::why(&e));
                            row.error = Some(e);
                        }
                    }
                }
                eprintln!(
                    "wrk, round {}/{rounds}: {label} done ({:.0?} elapsed)",
                    round + 1,
                    started.elapsed()
                );
            }
        }
    }

    // Cross-loop ping-pong, each row in its own process.
    let mut pp_rows: Vec<pingpong::Row> = p
        .pingpong
        .iter()
        .map(|peer| pingpong::Row {
            peer,
            samples: Vec::new(),
            error: None,
        })
        .collect();
    let pp_perf = !pp_rows.is_empty() && p.closed_ms.2 != 0 && pingpong::perf_usable();
    let pp_limit = Duration::from_secs(30) + Duration::from_micros(p.pingpong_trips as u64 * 500);
    for round in 0..rounds {
        for row in pp_rows.iter_mut() {
            if row.error.is_some() {
                continue;
            }
            match pingpong::measure(
                row.peer,
                p.pingpong_trips,
                pingpong_cpus,
                pp_perf && round == 0,
                pp_limit,
            ) {
                Ok(s) => row.samples.push(s),
                Err(e) => {
                    eprintln!("{} ping-pong: {}", row.peer, report::why(&e));
                    row.error = Some(e);
                }
            }
        }
        if !pp_rows.is_empty() {
            eprintln!(
                "ping-pong, round {}/{rounds} done ({:.0?} elapsed)",
                round + 1,
                started.elapsed()
            );
        }
    }
    let pp_note = format!(
        "{} measured round trips per run after {} discarded, rows in their own process, threads pinned to CPUs {}; one-way = half the round trip; medians over {rounds} round(s). Kernel counts: {}",
        p.pingpong_trips,
        (p.pingpong_trips / 10).max(1),
        pingpong_cpus.map_or("(not pinned)".to_string(), |c| sys::fmt_cpus(&c)),
        if pp_perf {
            "`perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_read,syscalls:sys_enter_write,io_uring:io_uring_submit_req -p <row process>` over the first round's whole run (thread start-up and warm-up included), per message sent"
        } else {
            "not counted (smoke mode, or perf cannot count the tracepoints here)"
        }
    );

    // File reads (the servers are gone; the bench thread stays on the load-generator CPUs).
    let files_md = p.files.map(|m| {
        let md = files::run(m);
        eprintln!("file reads done ({:.0?} elapsed)", started.elapsed());
        md
    });

    let header = format!(
        "ringloop comparative suite, {mode} mode, {rounds} round(s), medians; {} CPU(s), {}, Linux {}, load average {} at start. Total run {:.0?}.",
        mach[0].1,
        mach[1].1,
        mach[2].1,
        mach[3].1,
        started.elapsed()
    );
    let rep = Report {
        header,
        mode,
        rounds,
        systool: tool_desc,
        machine: mach,
        peers: p.peers.clone(),
        workloads: p.closed.iter().map(Workload::label).collect(),
        rows,
        lat_workloads: p.open.iter().map(Workload::label).collect(),
        lat,
        lat_note: format!(
            "Each TCP connection sends on its own fixed schedule (rate / connections per second, staggered) with at most one request in flight; a late reply delays the next send but that request's latency still counts from its scheduled time. The generator sleeps in `epoll_pwait2` until 30 µs before the next send, then spins. Histograms merged over {rounds} round(s); warm-up {:?} discarded, window {:?} per round.",
            open_t.0, open_t.1
        ),
        wrk_workloads: p.wrk.iter().map(Workload::label).collect(),
        wrk: wrk_rows,
        wrk_skipped,
        pingpong: pp_rows,
        pingpong_note: pp_note,
        files_md,
    };
    let md = rep.markdown();
    println!("{md}");
    if !bench {
        println!("(smoke run: tiny sizes, figures meaningless)");
    }
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("ringloop-bench");
    let stem = if bench { "compare" } else { "compare-smoke" };
    let written = std::fs::create_dir_all(&dir).and_then(|_| {
        std::fs::write(dir.join(format!("{stem}.md")), &md)?;
        std::fs::write(dir.join(format!("{stem}.json")), rep.json())?;
        std::fs::write(dir.join(format!("{stem}.svg")), rep.svg())
    });
    match written {
        Ok(()) => println!("wrote {}/{stem}.{{md,json,svg}}", dir.display()),
        Err(e) => println!("could not write results to {}: {e}", dir.display()),
    }
    // A load failure (wrong bytes, lost reply, closed connection) is a bug;
    // a peer that cannot start here (e.g. no io_uring) is only reported.
    let broken = |e: &Option<String>| e.as_deref().is_some_and(|e| e.starts_with("load failed"));
    let failed = rep.rows.iter().any(|r| broken(&r.error))
        || rep.lat.iter().any(|r| broken(&r.error))
        || rep.pingpong.iter().any(|r| broken(&r.error));
    if !bench && failed {
        eprintln!("smoke run: a peer failed (see the table)");
        std::process::exit(1);
    }
}
