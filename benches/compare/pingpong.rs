//! Cross-loop ping-pong: two loops (threads) on two CPUs bounce a message
//! back and forth over a pair of channels; one-way latency is half the
//! round trip. Rows ([`PEERS`]):
//!
//! - `ringloop/msg-ring`: a `ringloop::cores` runtime of two io_uring loops,
//!   two unbounded `cores::channel`s; a loop that sleeps is woken by the
//!   other with `IORING_OP_MSG_RING` (a CQE posted into its ring);
//! - `ringloop/eventfd`: the same with `UringFeatures::msg_ring` off, so
//!   the sender writes the receiver's eventfd (and the receiver re-arms an
//!   io_uring READ on it);
//! - `tokio-mt`: one tokio multi_thread runtime with 2 workers, a ping and
//!   a pong task, tokio unbounded mpsc channels (tokio's scheduler is free
//!   to run both tasks on one worker, and does: see the "pong on another
//!   thread" column);
//! - `tokio-ct-x2`: two tokio current_thread runtimes, one per thread,
//!   tokio unbounded mpsc channels;
//!
//! The tokio runtimes have their I/O and timer drivers on (`enable_all`),
//! as a server's runtime does, so a parked thread sleeps in `epoll_wait`
//! and is woken by an eventfd write (without the I/O driver it would
//! park on a futex instead).
//! - `std-mpsc`: two plain threads with `std::sync::mpsc` (the floor).
//!
//! Every row runs in a fresh child process (`--pingpong <row>`), its
//! threads pinned to the two ping-pong CPUs (ping on the first, pong on the
//! second; tokio-mt's two workers likewise, wherever tokio runs its tasks).
//! Each message is a sequence number and a send timestamp; the pong side
//! returns it unchanged and the ping side checks the number, so a lost,
//! duplicated or reordered message fails the run. A tenth of the round
//! trips (at least one) is a discarded warm-up.
//!
//! In the first round, when `perf` can count tracepoints, the parent
//! attaches `perf stat -p <child>` before the child starts its threads and
//! counts, over the whole run (warm-up included), syscalls, `read` and
//! `write` syscalls, and io_uring SQEs; the child also reports
//! `ringloop::cores::wake_counts()` (wake-ups of sleeping io_uring loops
//! by MSG_RING and by eventfd). All are divided by the messages sent
//! (two per round trip).

use std::io::{self, BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringloop::cores::{self, Pinning, channel};
use ringloop::{DriverChoice, UringFeatures};

/// Every row, in table order.
pub const PEERS: &[&str] = &[
    "ringloop/msg-ring",
    "ringloop/eventfd",
    "tokio-mt",
    "tokio-ct-x2",
    "std-mpsc",
];

/// The row the others are compared with.
pub const BASELINE: &str = "tokio-ct-x2";

/// One message: sequence number, the ping side's send time, and the id of
/// the thread that sent it ([`thread_id`]).
type Msg = (u64, Instant, u64);

/// A small number naming the calling thread (for "did the pong side run on
/// another thread than the ping side").
fn thread_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}

/// The pong side's count of messages it handled on another thread than
/// the one that sent them.
#[derive(Default)]
struct Pong {
    other_thread: u64,
}

impl Pong {
    fn saw(&mut self, m: &Msg) {
        if m.2 != thread_id() {
            self.other_thread += 1;
        }
    }
}

/// What the ping side measured.
struct Trips {
    /// Round-trip times of the measured (post-warm-up) round trips.
    rtts: Vec<Duration>,
    /// Wall time of the measured round trips.
    total: Duration,
    /// Messages the pong side handled on another thread than the ping side
    /// sent them from (all of them, warm-up included).
    other_thread: u64,
}

/// The ping side's bookkeeping: sends `warm + n` numbered messages one at a
/// time and checks each one that comes back.
struct Pinger {
    warm: usize,
    n: usize,
    rtts: Vec<Duration>,
    started: Option<Instant>,
}

impl Pinger {
    fn new(warm: usize, n: usize) -> Pinger {
        Pinger {
            warm,
            n,
            rtts: Vec::with_capacity(n),
            started: None,
        }
    }
    fn count(&self) -> usize {
        self.warm + self.n
    }
    /// The `i`-th message to send.
    fn msg(&mut self, i: usize) -> Msg {
        if i == self.warm {
            self.started = Some(Instant::now());
        }
        (i as u64, Instant::now(), thread_id())
    }
    /// Checks the reply to message `i`.
    fn back(&mut self, i: usize, m: Option<Msg>) -> Result<(), String> {
        match m {
            Some((seq, t, _)) if seq == i as u64 => {
                if i >= self.warm {
                    self.rtts.push(t.elapsed());
                }
                Ok(())
            }
            Some((seq, ..)) => Err(format!("message {i}: got {seq} back")),
            None => Err(format!("message {i}: the pong side went away")),
        }
    }
    fn finish(self) -> Trips {
        Trips {
            total: self.started.map_or(Duration::ZERO, |s| s.elapsed()),
            rtts: self.rtts,
            other_thread: 0,
        }
    }
}

fn pin(cpu: Option<usize>) {
    if let Some(c) = cpu {
        // Best effort: an unpinned row is still a valid row.
        let _ = super::sys::pin_to(c);
    }
}

/// What each loop of a ringloop row returns.
enum Side {
    Ping(Trips),
    Pong(u64),
}

fn ringloop_row(features: UringFeatures, p: Pinger, cpus: Option<[usize; 2]>) -> Result<Trips, String> {
    let (to_pong, from_ping) = channel::unbounded::<Msg>();
    let (to_ping, from_pong) = channel::unbounded::<Msg>();
    let ends = Arc::new(Mutex::new(vec![Some((to_pong, from_pong)), Some((to_ping, from_ping))]));
    let pinger = Arc::new(Mutex::new(Some(p)));
    let mut b = cores::Builder::new()
        .driver(DriverChoice::Uring)
        .uring_features(features)
        .loops(2)
        .thread_name("pingpong");
    if let Some(c) = cpus {
        b = b.pinning(Pinning::Cpus(c.to_vec()));
    }
    let out = b
        .run(move |idx| {
            let (tx, mut rx) = ends.lock().unwrap()[idx.get()].take().unwrap();
            let pinger = if idx.get() == 0 {
                pinger.lock().unwrap().take()
            } else {
                None
            };
            async move {
                match pinger {
                    Some(mut p) => {
                        for i in 0..p.count() {
                            tx.try_send(p.msg(i)).map_err(|e| e.to_string())?;
                            p.back(i, rx.recv().await)?;
                        }
                        Ok::<_, String>(Side::Ping(p.finish()))
                    }
                    None => {
                        let mut pong = Pong::default();
                        while let Some(m) = rx.recv().await {
                            pong.saw(&m);
                            if tx.try_send(m).is_err() {
                                break;
                            }
                        }
                        Ok::<_, String>(Side::Pong(pong.other_thread))
                    }
                }
            }
        })
        .map_err(|e| e.to_string())?;
    let mut out = out.into_iter();
    match (out.next().flatten(), out.next().flatten()) {
        (Some(Ok(Side::Ping(mut t))), Some(Ok(Side::Pong(other)))) => {
            t.other_thread = other;
            Ok(t)
        }
        (Some(Err(e)), _) | (_, Some(Err(e))) => Err(format!("load failed: {e}")),
        _ => Err("load failed: a loop returned nothing".into()),
    }
}

async fn tokio_ping(
    mut p: Pinger,
    tx: tokio::sync::mpsc::UnboundedSender<Msg>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Msg>,
) -> Result<Trips, String> {
    for i in 0..p.count() {
        tx.send(p.msg(i)).map_err(|e| e.to_string())?;
        p.back(i, rx.recv().await)?;
    }
    Ok(p.finish())
}

async fn tokio_pong(
    tx: tokio::sync::mpsc::UnboundedSender<Msg>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Msg>,
) -> u64 {
    let mut pong = Pong::default();
    while let Some(m) = rx.recv().await {
        pong.saw(&m);
        if tx.send(m).is_err() {
            break;
        }
    }
    pong.other_thread
}

fn tokio_mt_row(p: Pinger, cpus: Option<[usize; 2]>) -> Result<Trips, String> {
    let (to_pong, from_ping) = tokio::sync::mpsc::unbounded_channel();
    let (to_ping, from_pong) = tokio::sync::mpsc::unbounded_channel();
    let started = Arc::new(AtomicUsize::new(0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // The two workers start first; any later (blocking-pool) thread
            // stays unpinned.
            let i = started.fetch_add(1, Ordering::Relaxed);
            if i < 2 {
                pin(cpus.map(|c| c[i]));
            }
        })
        .build()
        .map_err(|e| e.to_string())?;
    let pong = rt.spawn(tokio_pong(to_ping, from_ping));
    let ping = rt.spawn(tokio_ping(p, to_pong, from_pong));
    let res = rt.block_on(async {
        let mut t = ping
            .await
            .map_err(|e| format!("load failed: {e}"))?
            .map_err(|e| format!("load failed: {e}"))?;
        t.other_thread = pong.await.map_err(|e| format!("load failed: {e}"))?;
        Ok(t)
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    res
}

fn tokio_ct_row(p: Pinger, cpus: Option<[usize; 2]>) -> Result<Trips, String> {
    let (to_pong, from_ping) = tokio::sync::mpsc::unbounded_channel();
    let (to_ping, from_pong) = tokio::sync::mpsc::unbounded_channel();
    let rt = || tokio::runtime::Builder::new_current_thread().enable_all().build();
    let pong_rt = rt().map_err(|e| e.to_string())?;
    let ping_rt = rt().map_err(|e| e.to_string())?;
    let pong = std::thread::spawn(move || {
        pin(cpus.map(|c| c[1]));
        pong_rt.block_on(tokio_pong(to_ping, from_ping))
    });
    let ping = std::thread::spawn(move || {
        pin(cpus.map(|c| c[0]));
        ping_rt.block_on(tokio_ping(p, to_pong, from_pong))
    });
    join_pair(ping, pong)
}

fn std_row(mut p: Pinger, cpus: Option<[usize; 2]>) -> Result<Trips, String> {
    let (to_pong, from_ping) = std::sync::mpsc::channel::<Msg>();
    let (to_ping, from_pong) = std::sync::mpsc::channel::<Msg>();
    let pong = std::thread::spawn(move || {
        pin(cpus.map(|c| c[1]));
        let mut pong = Pong::default();
        while let Ok(m) = from_ping.recv() {
            pong.saw(&m);
            if to_ping.send(m).is_err() {
                break;
            }
        }
        pong.other_thread
    });
    let ping = std::thread::spawn(move || {
        pin(cpus.map(|c| c[0]));
        for i in 0..p.count() {
            to_pong.send(p.msg(i)).map_err(|e| e.to_string())?;
            p.back(i, from_pong.recv().ok())?;
        }
        Ok::<_, String>(p.finish())
    });
    join_pair(ping, pong)
}

/// Joins the ping thread (its result) and then the pong thread (its
/// other-thread count).
fn join_pair(
    ping: std::thread::JoinHandle<Result<Trips, String>>,
    pong: std::thread::JoinHandle<u64>,
) -> Result<Trips, String> {
    let res = ping
        .join()
        .map_err(|_| "load failed: the ping thread panicked".to_string())?;
    let other = pong
        .join()
        .map_err(|_| "load failed: the pong thread panicked".to_string())?;
    let mut t = res.map_err(|e| format!("load failed: {e}"))?;
    t.other_thread = other;
    Ok(t)
}

/// Warm-up round trips for `n` measured ones.
fn warm_of(n: usize) -> usize {
    (n / 10).max(1)
}

/// Child mode (`--pingpong <row> --trips N --cpus A,B|none`): prints
/// `READY`, waits for a line on stdin, runs the row and prints `RESULT
/// <round trips incl. warm-up> <p50 ns> <p99 ns> <msgs/s> <wake-ups by
/// MSG_RING> <by eventfd> <messages the pong side handled on another
/// thread>` (one-way p50/p99) or `ERR <why>`, then exits.
pub fn child(row: &str, n: usize, cpus: Option<[usize; 2]>) -> ! {
    // SAFETY: plain prctl; the child dies with the bench process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    println!("READY");
    let _ = io::stdout().flush();
    let mut line = String::new();
    let _ = io::stdin().lock().read_line(&mut line);
    let n = n.max(1);
    let p = Pinger::new(warm_of(n), n);
    let total = p.count();
    let res = match row {
        "ringloop/msg-ring" => ringloop_row(UringFeatures::all(), p, cpus),
        "ringloop/eventfd" => {
            let mut f = UringFeatures::all();
            f.msg_ring = false;
            ringloop_row(f, p, cpus)
        }
        "tokio-mt" => tokio_mt_row(p, cpus),
        "tokio-ct-x2" => tokio_ct_row(p, cpus),
        "std-mpsc" => std_row(p, cpus),
        other => Err(format!("unknown ping-pong row {other}")),
    };
    match res {
        Ok(mut t) if !t.rtts.is_empty() => {
            t.rtts.sort();
            let q = |p: f64| t.rtts[((t.rtts.len() as f64 * p) as usize).min(t.rtts.len() - 1)].as_nanos() / 2;
            let w = cores::wake_counts();
            println!(
                "RESULT {total} {} {} {} {} {} {}",
                q(0.5),
                q(0.99),
                2.0 * t.rtts.len() as f64 / t.total.as_secs_f64(),
                w.sent_msg_ring,
                w.sent_eventfd,
                t.other_thread
            );
            std::process::exit(0);
        }
        Ok(_) => println!("ERR load failed: no round trip measured"),
        Err(e) => println!("ERR {e}"),
    }
    std::process::exit(1);
}

/// One run of one row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub p50_us: f64,
    pub p99_us: f64,
    pub msgs_per_s: f64,
    /// Per message (warm-up included): wake-ups of a sleeping io_uring
    /// loop sent by MSG_RING and by eventfd (ringloop rows; 0 elsewhere).
    pub wake_msg_ring: f64,
    pub wake_eventfd: f64,
    /// Share of the messages the pong side handled on another thread than
    /// the ping side (1.0: a true cross-thread hand-off every time).
    pub cross_thread: f64,
    /// Per message, first round only, when perf counted them.
    pub syscalls: Option<f64>,
    pub reads: Option<f64>,
    pub writes: Option<f64>,
    pub sqes: Option<f64>,
}

/// Parses a child's `RESULT` line (its fields after `RESULT`): the sample
/// without kernel counts, and the messages sent (two per round trip).
pub fn parse_result(rest: &str) -> Option<(Sample, f64)> {
    let f: Vec<f64> = rest.split_whitespace().map(|v| v.parse().ok()).collect::<Option<_>>()?;
    let [trips, p50, p99, rate, mr, ev, other] = f[..] else {
        return None;
    };
    let msgs = (2.0 * trips).max(1.0);
    Some((
        Sample {
            p50_us: p50 / 1e3,
            p99_us: p99 / 1e3,
            msgs_per_s: rate,
            wake_msg_ring: mr / msgs,
            wake_eventfd: ev / msgs,
            cross_thread: other / trips.max(1.0),
            syscalls: None,
            reads: None,
            writes: None,
            sqes: None,
        },
        msgs,
    ))
}

/// The perf events counted in the first round.
const PERF_EVENTS: [&str; 4] = [
    "raw_syscalls:sys_enter",
    "syscalls:sys_enter_read",
    "syscalls:sys_enter_write",
    "io_uring:io_uring_submit_req",
];

/// Whether perf counts [`PERF_EVENTS`] here.
pub fn perf_usable() -> bool {
    let events = PERF_EVENTS.join(",");
    Command::new("perf")
        .args(["stat", "-x,", "-e", &events, "--", "true"])
        .stdout(Stdio::null())
        .output()
        .map(|o| {
            let err = String::from_utf8_lossy(&o.stderr);
            o.status.success() && PERF_EVENTS.iter().all(|e| err.contains(e))
        })
        .unwrap_or(false)
}

/// Counts of `event` in `perf stat -x,` output.
pub fn perf_count(text: &str, event: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split(',').any(|f| f.trim() == event))
        .and_then(|l| l.split(',').next()?.trim().parse().ok())
}

struct Perf {
    child: Child,
    file: std::path::PathBuf,
}

impl Perf {
    fn start(pid: u32) -> Option<Perf> {
        let file = std::env::temp_dir().join(format!("ringloop-pingpong-{}-{pid}.txt", std::process::id()));
        let child = Command::new("perf")
            .args(["stat", "-x,", "-e", &PERF_EVENTS.join(","), "-o"])
            .arg(&file)
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Perf { child, file })
    }
    /// Stops perf (it also ends by itself when the counted process exits).
    fn stop(mut self) -> String {
        // SAFETY: signals our own child process by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        let _ = std::fs::remove_file(&self.file);
        text
    }
}

/// Runs `row` once in a child process: `n` measured round trips on `cpus`,
/// counted by perf when `count`.
pub fn measure(row: &str, n: usize, cpus: Option<[usize; 2]>, count: bool, limit: Duration) -> Result<Sample, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let cpus_arg = cpus.map_or("none".to_string(), |[a, b]| format!("{a},{b}"));
    let mut child = Command::new(exe)
        .args(["--pingpong", row, "--trips", &n.to_string(), "--cpus", &cpus_arg])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    // Lines from the child, read on a thread so a hung child times out.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let kill = |mut child: Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    if rx.recv_timeout(Duration::from_secs(10)).ok().as_deref() != Some("READY") {
        kill(child);
        return Err("the ping-pong child did not start".into());
    }
    let perf = if count { Perf::start(pid) } else { None };
    if perf.is_some() {
        // perf attaches while the child waits for its go.
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = stdin.write_all(b"go\n");
    drop(stdin);
    let line = rx.recv_timeout(limit);
    let status = match line {
        Ok(_) => child.wait().ok(),
        Err(_) => {
            kill(child);
            None
        }
    };
    let counted = perf.map(Perf::stop);
    let line = line.map_err(|_| "load failed: timed out".to_string())?;
    if let Some(e) = line.strip_prefix("ERR ") {
        return Err(e.to_string());
    }
    let (mut s, msgs) = line
        .strip_prefix("RESULT ")
        .and_then(parse_result)
        .ok_or_else(|| format!("load failed: bad child output {line:?} (exit {status:?})"))?;
    if let Some(text) = counted {
        let per = |e: &str| perf_count(&text, e).map(|c| c / msgs);
        s.syscalls = per(PERF_EVENTS[0]);
        s.reads = per(PERF_EVENTS[1]);
        s.writes = per(PERF_EVENTS[2]);
        s.sqes = per(PERF_EVENTS[3]);
    }
    Ok(s)
}

/// Results of one row over all rounds.
pub struct Row {
    pub peer: &'static str,
    pub samples: Vec<Sample>,
    pub error: Option<String>,
}

impl Row {
    pub fn med(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        super::report::median(self.samples.iter().map(f).collect())
    }
    pub fn counted(&self, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.samples.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| super::report::median(v))
    }
}

/// Checks the `RESULT` and perf parsers (smoke mode).
pub fn self_check() -> Result<(), String> {
    let (s, msgs) = parse_result("1100 1500 20000 500000 2150 3 1100").ok_or("RESULT line not parsed")?;
    let want = Sample {
        p50_us: 1.5,
        p99_us: 20.0,
        msgs_per_s: 500000.0,
        wake_msg_ring: 2150.0 / 2200.0,
        wake_eventfd: 3.0 / 2200.0,
        cross_thread: 1.0,
        syscalls: None,
        reads: None,
        writes: None,
        sqes: None,
    };
    if s != want || msgs != 2200.0 {
        return Err(format!("RESULT parsed as {s:?}, {msgs}"));
    }
    if parse_result("1 2 3").is_some() || parse_result("a b c d e f g").is_some() {
        return Err("a malformed RESULT line was accepted".into());
    }
    let text = "# started\n\n4410,,raw_syscalls:sys_enter,1,100.00,,\n12,,syscalls:sys_enter_read,1,100.00,,\n\
                <not counted>,,syscalls:sys_enter_write,0,0.00,,\n";
    let got = (
        perf_count(text, PERF_EVENTS[0]),
        perf_count(text, PERF_EVENTS[1]),
        perf_count(text, PERF_EVENTS[2]),
        perf_count(text, PERF_EVENTS[3]),
    );
    if got != (Some(4410.0), Some(12.0), None, None) {
        return Err(format!("perf ping-pong counts parsed as {got:?}"));
    }
    Ok(())
}
