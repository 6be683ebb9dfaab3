//! Comparative TCP echo suite: ringloop (io_uring and readiness backends)
//! against tokio current_thread, monoio, compio, and hand-written io_uring and
//! epoll loops (the ceilings), each server in its own process.
//!
//! ```text
//! cargo bench --bench compare -- --quick   # 3 workloads, 1 round (a few minutes)
//! cargo bench --bench compare              # 9 workloads, 3 rounds
//! cargo bench --bench compare -- --peers ringloop/uring,raw-uring --rounds 5
//! cargo bench --bench compare -- --quick --workloads 64x4KiB --syscalls strace
//! ```
//!
//! Method. The bench binary re-executes itself as `--serve <peer>`; the child
//! pins itself to CPU 0, binds 127.0.0.1:0 and prints its port. The load
//! generator (one tokio current_thread runtime driving every connection; it
//! verifies every echoed byte) runs in the parent pinned to CPU 1. For each
//! round, workload and peer (peers interleaved within a workload): fresh
//! server, connect, a discarded warm-up window, then a measured closed-loop
//! window. The headline is the server's CPU time per request (sum of the
//! per-thread `/proc/<pid>/task/*/schedstat` run times, i.e. utime+stime at
//! nanosecond resolution), because on 2 loopback cores the load generator
//! saturates before a lean server does. Also reported: req/s, context
//! switches per request (`/proc/<pid>/task/*/status`), syscalls per request
//! (counted in an extra window by `perf stat -e raw_syscalls:sys_enter -p`,
//! or `strace -c -f -p` when perf cannot; the server is idle while the tool
//! attaches and detaches, so only that window's requests are counted), and
//! the load generator's own CPU use (near 100% means it is the bottleneck).
//! Medians over rounds. Writes `target/ringloop-bench/compare.{md,json,svg}`.
//!
//! Without `--bench` (under `cargo test --bench compare`) a tiny smoke
//! configuration runs so the code cannot rot; it writes `compare-smoke.*`.

#[path = "compare/peers/mod.rs"]
mod peers;

use std::fmt::Write as _;
use std::io::{self, BufRead, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pin_to(cpu: usize) -> bool {
    // SAFETY: `cpu_set_t` is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE (0 or 1).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pins the calling thread (pid 0) with a valid set.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// Online CPUs of the machine (not this thread's affinity mask).
fn cpus() -> usize {
    // SAFETY: sysconf with a valid name.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 { n as usize } else { 1 }
}

/// Child mode: serve `name` until killed, reporting `PORT <n>` or `ERR <why>`.
fn serve_child(name: &str, pin: bool) -> ! {
    // SAFETY: plain prctl; the server dies with the bench process, even if
    // the bench is killed before it can kill its server.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if pin && !pin_to(0) {
        println!("ERR sched_setaffinity(CPU 0) refused");
        std::process::exit(1);
    }
    let res = peers::listener().and_then(|l| {
        let port = l.local_addr()?.port();
        peers::serve(name, l, move || {
            println!("PORT {port}");
            let _ = io::Write::flush(&mut io::stdout());
        })
    });
    match res {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            println!("ERR {e}");
            std::process::exit(1);
        }
    }
}

/// Sum of run time (ns) over all threads of `pid` (`task/*/schedstat`).
fn proc_cpu_ns(pid: u32) -> u64 {
    let mut total = 0;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in dir.flatten() {
            let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            total += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// Voluntary + involuntary context switches over all threads of `pid`.
fn proc_ctxt(pid: u32) -> u64 {
    let mut total = 0;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in dir.flatten() {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for line in s.lines() {
                if line.starts_with("voluntary_ctxt_switches") || line.starts_with("nonvoluntary_ctxt_switches") {
                    total += line
                        .split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    total
}

/// Busy time (µs) of CPU `cpu` from `/proc/stat` (user, nice, system, irq,
/// softirq, steal): everything that ran on the server's core, including
/// softirq work deferred to ksoftirqd that no process is charged for.
fn core_busy_us(cpu: usize) -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let tag = format!("cpu{cpu} ");
    let Some(line) = stat.lines().find(|l| l.starts_with(&tag)) else {
        return f64::NAN;
    };
    let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    // SAFETY: sysconf with a valid name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    busy as f64 / hz * 1e6
}

/// Run time (ns) of the calling thread.
fn self_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(name: &str, pin: bool) -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["--serve", name, "--pin", if pin { "1" } else { "0" }])
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

/// How syscalls are counted.
#[derive(Clone, Copy, PartialEq)]
enum SysTool {
    Perf,
    Strace,
    None,
}

fn probe_systool(want: Option<&str>) -> (SysTool, String) {
    let perf_ok = want != Some("strace")
        && Command::new("perf")
            .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true"])
            .stdout(Stdio::null())
            .output()
            .map(|o| o.status.success() && String::from_utf8_lossy(&o.stderr).contains("raw_syscalls"))
            .unwrap_or(false);
    if perf_ok {
        return (SysTool::Perf, "perf stat -e raw_syscalls:sys_enter -p <server>".into());
    }
    let strace_ok = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if strace_ok {
        return (
            SysTool::Strace,
            "strace -c -f -p <server> (ptrace slows the server during that window)".into(),
        );
    }
    (
        SysTool::None,
        "n/a: neither `perf stat -e raw_syscalls:sys_enter` nor `strace` works here".into(),
    )
}

/// A running syscall counter attached to `pid`.
struct SysCount {
    child: Child,
    tool: SysTool,
    file: std::path::PathBuf,
}

impl SysCount {
    fn start(tool: SysTool, pid: u32) -> Option<SysCount> {
        let file = std::env::temp_dir().join(format!("ringloop-compare-{}-{pid}.txt", std::process::id()));
        let p = pid.to_string();
        let f = file.to_str()?.to_string();
        let mut cmd = match tool {
            SysTool::Perf => {
                let mut c = Command::new("perf");
                c.args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "-o", &f, "-p", &p]);
                c
            }
            SysTool::Strace => {
                let mut c = Command::new("strace");
                c.args(["-c", "-f", "-o", &f, "-p", &p]);
                c
            }
            SysTool::None => return None,
        };
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()?;
        Some(SysCount { child, tool, file })
    }

    fn stop(mut self) -> Option<u64> {
        // SAFETY: signals our own child process by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.file).ok()?;
        let _ = std::fs::remove_file(&self.file);
        match self.tool {
            SysTool::Perf => text
                .lines()
                .find(|l| l.contains("raw_syscalls:sys_enter"))
                .and_then(|l| l.split(',').next()?.trim().parse().ok()),
            SysTool::Strace => text
                .lines()
                .find(|l| l.trim_end().ends_with("total"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok()),
            SysTool::None => None,
        }
    }
}

/// One load-generator connection: `out` is sent, `back` must equal it.
struct Conn {
    s: tokio::net::TcpStream,
    out: Vec<u8>,
    back: Vec<u8>,
    i: u64,
}

async fn connect_all(addr: SocketAddr, n: usize, size: usize) -> io::Result<Vec<Conn>> {
    let mut v = Vec::with_capacity(n);
    for c in 0..n {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let out = (0..size)
            .map(|j| (c.wrapping_mul(131) ^ j.wrapping_mul(7)) as u8)
            .collect();
        v.push(Conn {
            s,
            out,
            back: vec![0; size],
            i: 0,
        });
    }
    Ok(v)
}

/// Runs every connection as a closed loop until `dur` has passed; returns
/// the connections and the number of verified round trips.
async fn phase(conns: Vec<Conn>, dur: Duration) -> io::Result<(Vec<Conn>, u64)> {
    let deadline = Instant::now() + dur;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            tokio::task::spawn_local(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    c.i += 1;
                    let k = c.out.len().min(8);
                    c.out[..k].copy_from_slice(&c.i.to_le_bytes()[..k]);
                    c.s.write_all(&c.out).await?;
                    c.s.read_exact(&mut c.back).await?;
                    if c.back != c.out {
                        return Err(io::Error::other("echo corrupted"));
                    }
                    done += 1;
                }
                Ok::<_, io::Error>((c, done))
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(tasks.len());
    let mut total = 0;
    let mut err = None;
    for t in tasks {
        match t.await {
            Ok(Ok((c, d))) => {
                conns.push(c);
                total += d;
            }
            Ok(Err(e)) => err = Some(e),
            Err(e) => err = Some(io::Error::other(e.to_string())),
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok((conns, total)),
    }
}

#[derive(Clone, Copy)]
struct Sample {
    rps: f64,
    cpu_us: f64,
    core_us: f64,
    ctxt: f64,
    sys: Option<f64>,
    lg_cpu: f64,
}

/// Peers, (connections, message size) workloads, rounds, (warm-up, window, syscall window) ms.
type Plan = (Vec<&'static str>, Vec<(usize, usize)>, usize, (u64, u64, u64));

struct Cfg {
    warm: Duration,
    window: Duration,
    sys_window: Duration,
    tool: SysTool,
    pin: bool,
}

fn measure(peer: &str, conns: usize, size: usize, cfg: &Cfg) -> Result<Sample, String> {
    let srv = Server::start(peer, cfg.pin)?;
    let pid = srv.pid();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    let limit = cfg.warm + cfg.window + cfg.sys_window + Duration::from_secs(30);
    let run = async {
        let c = connect_all(srv.addr, conns, size).await?;
        let (c, _) = phase(c, cfg.warm).await?;
        let (s0, x0, l0, b0, t0) = (
            proc_cpu_ns(pid),
            proc_ctxt(pid),
            self_cpu_ns(),
            core_busy_us(0),
            Instant::now(),
        );
        let (c, reqs) = phase(c, cfg.window).await?;
        let (s1, x1, l1, b1, wall) = (
            proc_cpu_ns(pid),
            proc_ctxt(pid),
            self_cpu_ns(),
            core_busy_us(0),
            t0.elapsed(),
        );
        let reqs_f = reqs.max(1) as f64;
        let mut sys = None;
        if !cfg.sys_window.is_zero() {
            if let Some(counter) = SysCount::start(cfg.tool, pid) {
                // The server is idle while the tool attaches and detaches.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let (_c, r) = phase(c, cfg.sys_window).await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
                sys = counter.stop().map(|n| n as f64 / r.max(1) as f64);
            }
        }
        Ok::<_, io::Error>(Sample {
            rps: reqs as f64 / wall.as_secs_f64(),
            cpu_us: (s1 - s0) as f64 / 1e3 / reqs_f,
            core_us: if cfg.pin { (b1 - b0) / reqs_f } else { f64::NAN },
            ctxt: (x1 - x0) as f64 / reqs_f,
            sys,
            lg_cpu: (l1 - l0) as f64 / 1e9 / wall.as_secs_f64(),
        })
    };
    let res = local.block_on(&rt, async { tokio::time::timeout(limit, run).await });
    match res {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("load failed: {e}")),
        Err(_) => Err("timed out".into()),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn size_label(size: usize) -> String {
    if size >= 1024 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

struct Row {
    workload: String,
    peer: &'static str,
    samples: Vec<Sample>,
    error: Option<String>,
}

impl Row {
    fn med(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        median(self.samples.iter().map(f).collect())
    }
    fn sys(&self) -> Option<f64> {
        let v: Vec<f64> = self.samples.iter().filter_map(|s| s.sys).collect();
        if v.is_empty() { None } else { Some(median(v)) }
    }
}

fn machine() -> Vec<(&'static str, String)> {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    vec![
        ("cpus", cpus().to_string()),
        ("cpu_model", model),
        ("kernel", kernel),
        ("loadavg_at_start", load),
    ]
}

fn fmt_ratio(x: f64, base: f64) -> String {
    if x.is_finite() && base.is_finite() && base > 0.0 {
        format!("{:.2}", x / base)
    } else {
        "–".into()
    }
}

fn markdown(rows: &[Row], workloads: &[String], peers: &[&'static str], header: &str) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "{header}\n");
    let find = |w: &str, p: &str| rows.iter().find(|r| r.workload == w && r.peer == p);
    let _ = writeln!(m, "Server CPU µs per request (median; lower is better):\n");
    let _ = write!(m, "| peer |");
    for w in workloads {
        let _ = write!(m, " {w} |");
    }
    let _ = write!(m, "\n|---|");
    for _ in workloads {
        let _ = write!(m, "---:|");
    }
    m.push('\n');
    for p in peers {
        let _ = write!(m, "| {p} |");
        for w in workloads {
            match find(w, p) {
                Some(r) if r.error.is_none() => {
                    let _ = write!(m, " {:.2} |", r.med(|s| s.cpu_us));
                }
                _ => m.push_str(" n/a |"),
            }
        }
        m.push('\n');
    }
    let _ = writeln!(
        m,
        "\n| workload | peer | server CPU µs/req | CPU vs tokio | CPU 0 busy µs/req | req/s | req/s vs tokio | ctx sw/req | syscalls/req | load-gen CPU |"
    );
    let _ = writeln!(m, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for w in workloads {
        let base = find(w, "tokio-ct").filter(|r| r.error.is_none());
        let (bc, br) = base.map_or((f64::NAN, f64::NAN), |b| (b.med(|s| s.cpu_us), b.med(|s| s.rps)));
        for p in peers {
            let Some(r) = find(w, p) else { continue };
            if let Some(e) = &r.error {
                let _ = writeln!(
                    m,
                    "| {w} | {p} | unavailable: {} | | | | | | | |",
                    e.replace('|', "/").replace('\n', " ")
                );
                continue;
            }
            let (c, q) = (r.med(|s| s.cpu_us), r.med(|s| s.rps));
            let sys = r.sys().map_or("n/a".into(), |v| format!("{v:.2}"));
            let _ = writeln!(
                m,
                "| {w} | {p} | {c:.2} | {} | {:.2} | {q:.0} | {} | {:.3} | {sys} | {:.0}% |",
                fmt_ratio(c, bc),
                r.med(|s| s.core_us),
                fmt_ratio(q, br),
                r.med(|s| s.ctxt),
                r.med(|s| s.lg_cpu) * 100.0
            );
        }
    }
    m
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(x: f64) -> String {
    if x.is_finite() { format!("{x}") } else { "null".into() }
}

fn json(rows: &[Row], mode: &str, rounds: usize, systool: &str) -> String {
    let mut j = String::from("{\n");
    let _ = writeln!(
        j,
        "  \"mode\": {},\n  \"rounds\": {rounds},\n  \"syscall_counter\": {},",
        json_str(mode),
        json_str(systool)
    );
    j.push_str("  \"machine\": {");
    let mach: Vec<String> = machine()
        .iter()
        .map(|(k, v)| format!("{}: {}", json_str(k), json_str(v)))
        .collect();
    let _ = writeln!(j, "{}}},\n  \"results\": [", mach.join(", "));
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            let mut o = format!("    {{\"workload\": {}, \"peer\": {}", json_str(&r.workload), json_str(r.peer));
            if let Some(e) = &r.error {
                let _ = write!(o, ", \"error\": {}}}", json_str(e));
                return o;
            }
            let samples: Vec<String> = r
                .samples
                .iter()
                .map(|s| {
                    format!(
                        "{{\"req_per_s\": {}, \"server_cpu_us_per_req\": {}, \"cpu0_busy_us_per_req\": {}, \"ctxt_per_req\": {}, \"syscalls_per_req\": {}, \"loadgen_cpu_share\": {}}}",
                        json_num(s.rps),
                        json_num(s.cpu_us),
                        json_num(s.core_us),
                        json_num(s.ctxt),
                        s.sys.map_or("null".into(), json_num),
                        json_num(s.lg_cpu)
                    )
                })
                .collect();
            let _ = write!(
                o,
                ", \"median_server_cpu_us_per_req\": {}, \"median_req_per_s\": {}, \"samples\": [{}]}}",
                json_num(r.med(|s| s.cpu_us)),
                json_num(r.med(|s| s.rps)),
                samples.join(", ")
            );
            o
        })
        .collect();
    let _ = writeln!(j, "{}\n  ]\n}}", items.join(",\n"));
    j
}

const COLORS: &[&str] = &[
    "#d62728", "#ff9896", "#1f77b4", "#2ca02c", "#9467bd", "#7f7f7f", "#bcbd22", "#17becf",
];

fn svg(rows: &[Row], workloads: &[String], peers: &[&'static str]) -> String {
    let (bw, gap, top, h, left) = (14.0, 24.0, 40.0, 300.0, 60.0);
    let gw = bw * peers.len() as f64 + gap;
    let width = left + gw * workloads.len() as f64 + 160.0;
    let val = |w: &str, p: &str| {
        rows.iter()
            .find(|r| r.workload == w && r.peer == p && r.error.is_none())
            .map(|r| r.med(|s| s.cpu_us))
            .filter(|v| v.is_finite())
    };
    let max = rows
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| r.med(|s| s.cpu_us))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let max = if max > 0.0 { max * 1.1 } else { 1.0 };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{:.0}" font-family="sans-serif" font-size="11">"#,
        top + h + 60.0
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14">TCP echo: server CPU µs per request (lower is better)</text>"#
    );
    for t in 0..=4 {
        let v = max * t as f64 / 4.0;
        let y = top + h - h * t as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{:.0}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{v:.1}</text>"##,
            width - 160.0,
            left - 4.0,
            y + 4.0
        );
    }
    for (wi, w) in workloads.iter().enumerate() {
        let x0 = left + gap / 2.0 + gw * wi as f64;
        for (pi, p) in peers.iter().enumerate() {
            if let Some(v) = val(w, p) {
                let bh = h * v / max;
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="{bw}" height="{bh:.1}" fill="{}"><title>{p} {w}: {v:.2} µs</title></rect>"#,
                    x0 + bw * pi as f64,
                    top + h - bh,
                    COLORS[pi % COLORS.len()]
                );
            }
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{w}</text>"#,
            x0 + bw * peers.len() as f64 / 2.0,
            top + h + 16.0
        );
    }
    for (pi, p) in peers.iter().enumerate() {
        let y = top + 14.0 * pi as f64;
        let x = width - 150.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x:.0}" y="{y:.0}" width="10" height="10" fill="{}"/><text x="{:.0}" y="{:.0}">{p}</text>"#,
            COLORS[pi % COLORS.len()],
            x + 14.0,
            y + 9.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(name) = opt("--serve") {
        serve_child(&name, opt("--pin").as_deref() == Some("1"));
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
    let (peer_list, workloads, mut rounds, cfg_t): Plan = match mode {
        "smoke" => (
            vec!["ringloop/uring", "ringloop/fallback", "tokio-ct", "raw-epoll"],
            vec![(4, 128)],
            1,
            (50, 200, 0),
        ),
        "quick" => (
            peers::ALL.to_vec(),
            vec![(1, 128), (64, 128), (64, 4096)],
            1,
            (300, 2000, 500),
        ),
        _ => {
            let mut w = Vec::new();
            for c in [1, 64, 512] {
                for s in [128, 4096, 65536] {
                    w.push((c, s));
                }
            }
            (peers::ALL.to_vec(), w, 3, (500, 2000, 500))
        }
    };
    let mut peer_list = peer_list;
    if let Some(sel) = opt("--peers") {
        peer_list = peers::ALL
            .iter()
            .copied()
            .filter(|p| sel.split(',').any(|s| s == *p))
            .collect();
    }
    if let Some(r) = opt("--rounds").and_then(|r| r.parse().ok()) {
        rounds = r;
    }
    let mut workloads = workloads;
    if let Some(sel) = opt("--workloads") {
        workloads.retain(|&(c, sz)| sel.split(',').any(|w| w == format!("{c}x{}", size_label(sz))));
    }
    let (tool, tool_desc) = if cfg_t.2 == 0 {
        (SysTool::None, "not measured in smoke mode".to_string())
    } else {
        probe_systool(opt("--syscalls").as_deref())
    };
    let pinned = cpus() >= 2 && pin_to(1);
    let cfg = Cfg {
        pin: pinned,
        warm: Duration::from_millis(cfg_t.0),
        window: Duration::from_millis(cfg_t.1),
        sys_window: Duration::from_millis(cfg_t.2),
        tool,
    };
    let mach = machine();
    println!("# ringloop comparative TCP echo ({mode} mode)\n");
    for (k, v) in &mach {
        println!("- {k}: {v}");
    }
    println!(
        "- servers in their own process pinned to CPU 0, load generator (tokio current_thread, every byte verified) pinned to CPU 1: {}",
        if pinned {
            "yes"
        } else {
            "no (fewer than 2 CPUs or sched_setaffinity refused)"
        }
    );
    println!(
        "- {rounds} round(s), peers interleaved; warm-up {:?} discarded, measured window {:?}",
        cfg.warm, cfg.window
    );
    println!("- syscalls: {tool_desc}\n");
    let started = Instant::now();
    let wl: Vec<String> = workloads
        .iter()
        .map(|&(c, s)| format!("{c}x{}", size_label(s)))
        .collect();
    let mut rows: Vec<Row> = Vec::new();
    for (w, _) in wl.iter().zip(&workloads) {
        for p in &peer_list {
            rows.push(Row {
                workload: w.clone(),
                peer: p,
                samples: Vec::new(),
                error: None,
            });
        }
    }
    for round in 0..rounds {
        for (wi, &(conns, size)) in workloads.iter().enumerate() {
            for p in &peer_list {
                let row = rows.iter_mut().find(|r| r.workload == wl[wi] && r.peer == *p).unwrap();
                if row.error.is_some() {
                    continue;
                }
                match measure(p, conns, size, &cfg) {
                    Ok(s) => row.samples.push(s),
                    Err(e) => {
                        eprintln!("{p} {}: unavailable: {e}", wl[wi]);
                        row.error = Some(e);
                    }
                }
            }
            eprintln!(
                "round {}/{rounds}: {} done ({:.0?} elapsed)",
                round + 1,
                wl[wi],
                started.elapsed()
            );
        }
    }
    let header = format!(
        "TCP echo, {mode} mode, {rounds} round(s), medians; {} CPU(s), {}, Linux {}, load average {} at start. Total run {:.0?}.",
        mach[0].1,
        mach[1].1,
        mach[2].1,
        mach[3].1,
        started.elapsed()
    );
    let md = markdown(&rows, &wl, &peer_list, &header);
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
        std::fs::write(dir.join(format!("{stem}.json")), json(&rows, mode, rounds, &tool_desc))?;
        std::fs::write(dir.join(format!("{stem}.svg")), svg(&rows, &wl, &peer_list))
    });
    match written {
        Ok(()) => println!("wrote {}/{stem}.{{md,json,svg}}", dir.display()),
        Err(e) => println!("could not write results to {}: {e}", dir.display()),
    }
}
