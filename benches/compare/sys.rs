//! Process and machine measurements for the comparative bench: CPU pinning,
//! per-process CPU time and context switches from `/proc`, syscall counting
//! with `perf stat` or `strace`, and the machine description.

use std::process::{Child, Command, Stdio};

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> bool {
    pin_to_set(&[cpu])
}

/// Pins the calling thread to the CPUs of `cpus` (false when the set is
/// empty, a CPU number is out of range or the kernel refuses).
pub fn pin_to_set(cpus: &[usize]) -> bool {
    // SAFETY: `cpu_set_t` is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    if cpus.is_empty() || cpus.iter().any(|&c| c >= max) {
        return false;
    }
    for &cpu in cpus {
        // SAFETY: `cpu` is below the set's capacity (checked above).
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pins the calling thread (pid 0) with a valid set.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// Raises this process's soft descriptor limit to its hard limit (servers
/// started later inherit it) and returns the soft limit now in force.
pub fn raise_nofile() -> usize {
    // SAFETY: an all-zero `rlimit` is a valid value; getrlimit/setrlimit
    // only read or write the one struct passed.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r = raised;
            }
        }
        usize::try_from(r.rlim_cur).unwrap_or(usize::MAX).min(1 << 20)
    }
}

/// Parses a CPU list: `0,2,4`, ranges `0-3`, or both (`0-1,6`).
pub fn parse_cpus(list: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad CPU number {v:?} in {list:?}"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("bad CPU range {part:?}"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    if out.is_empty() {
        return Err(format!("empty CPU list {list:?}"));
    }
    Ok(out)
}

/// A CPU list as `--cpus` takes it.
pub fn fmt_cpus(cpus: &[usize]) -> String {
    cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// Online CPUs of the machine (not this thread's affinity mask).
pub fn cpus() -> usize {
    // SAFETY: sysconf with a valid name.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 { n as usize } else { 1 }
}

/// Sum of run time (ns) over all threads of `pid` (`task/*/schedstat`).
pub fn proc_cpu_ns(pid: u32) -> u64 {
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
pub fn proc_ctxt(pid: u32) -> u64 {
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

/// Busy time (µs) of the CPUs `cpus` from `/proc/stat` (summed).
pub fn cores_busy_us(cpus: &[usize]) -> f64 {
    cpus.iter().map(|&c| core_busy_us(c)).sum()
}

/// Busy time (µs) of CPU `cpu` from `/proc/stat` (user, nice, system, irq,
/// softirq, steal): everything that ran on the server's core, including
/// softirq work deferred to ksoftirqd that no process is charged for.
pub fn core_busy_us(cpu: usize) -> f64 {
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
pub fn self_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// How syscalls (and, with perf, io_uring kernel events) are counted.
#[derive(Clone, Copy, PartialEq)]
pub enum SysTool {
    /// `perf stat`; `uring`: the io_uring tracepoints ([`URING_EVENTS`])
    /// are counted too.
    Perf {
        uring: bool,
    },
    Strace,
    None,
}

/// The syscall tracepoint every perf count includes.
pub const SYSCALL_EVENT: &str = "raw_syscalls:sys_enter";

/// The io_uring tracepoints counted beside syscalls, in [`Counts`] order:
/// SQEs submitted, internal poll arms (an operation that found its socket
/// not ready and waits for a wake-up to retry), io-wq punts (an operation
/// handed to a kernel worker thread).
pub const URING_EVENTS: [&str; 3] = [
    "io_uring:io_uring_submit_req",
    "io_uring:io_uring_poll_arm",
    "io_uring:io_uring_queue_async_work",
];

/// Kernel event counts over one window; `None` where not counted.
#[derive(Clone, Copy, PartialEq, Debug, Default)]
pub struct Counts {
    pub syscalls: Option<u64>,
    pub sqes: Option<u64>,
    pub poll_arms: Option<u64>,
    pub punts: Option<u64>,
}

/// Parses the output of `perf stat -x,` (lines `count,unit,event,...`;
/// `<not counted>` or `<not supported>` instead of a count, `#` comments).
pub fn parse_perf(text: &str) -> Counts {
    let count = |event: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.split(',').any(|f| f.trim() == event))
            .and_then(|l| l.split(',').next()?.trim().parse().ok())
    };
    Counts {
        syscalls: count(SYSCALL_EVENT),
        sqes: count(URING_EVENTS[0]),
        poll_arms: count(URING_EVENTS[1]),
        punts: count(URING_EVENTS[2]),
    }
}

/// Parses `strace -c` output: the syscall count of its `total` line.
pub fn parse_strace(text: &str) -> Counts {
    Counts {
        syscalls: text
            .lines()
            .find(|l| l.trim_end().ends_with("total"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok()),
        ..Counts::default()
    }
}

/// Checks the perf and strace parsers on captured outputs.
pub fn self_check() -> Result<(), String> {
    let check = |what: &str, got: Counts, want: Counts| {
        if got == want {
            Ok(())
        } else {
            Err(format!("{what}: parsed {got:?}, want {want:?}"))
        }
    };
    // `perf stat -x, -o FILE -e <all four> -p PID`, perf 6.1.
    let all = "# started on Sat Dec  5 10:00:00 2026\n\n\
               12929,,raw_syscalls:sys_enter,857335,100.00,,\n\
               40120,,io_uring:io_uring_submit_req,857335,100.00,,\n\
               13001,,io_uring:io_uring_poll_arm,857335,100.00,,\n\
               0,,io_uring:io_uring_queue_async_work,857335,100.00,,\n";
    let want = Counts {
        syscalls: Some(12929),
        sqes: Some(40120),
        poll_arms: Some(13001),
        punts: Some(0),
    };
    check("perf, four events", parse_perf(all), want)?;
    let partial = "<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n\
                   7,,io_uring:io_uring_submit_req,100,100.00,,\n\
                   <not supported>,,io_uring:io_uring_poll_arm,0,100.00,,\n";
    let want = Counts {
        sqes: Some(7),
        ..Counts::default()
    };
    check("perf, events not counted or missing", parse_perf(partial), want)?;
    let only_syscalls = "# started on x\n\n5,,raw_syscalls:sys_enter,100,100.00,,\n";
    let want = Counts {
        syscalls: Some(5),
        ..Counts::default()
    };
    check("perf, syscalls only", parse_perf(only_syscalls), want)?;
    let strace = "% time     seconds  usecs/call     calls    errors syscall\n\
                  ------ ----------- ----------- --------- --------- ----------------\n\
                  100.00    0.000100           1       100           io_uring_enter\n\
                  ------ ----------- ----------- --------- --------- ----------------\n\
                  100.00    0.000100           1       100           total\n";
    let want = Counts {
        syscalls: Some(100),
        ..Counts::default()
    };
    check("strace -c", parse_strace(strace), want)?;
    let lists = [
        ("0-1,6", Some(vec![0, 1, 6])),
        ("3", Some(vec![3])),
        ("2-1", None),
        ("x", None),
        ("", None),
    ];
    for (list, want) in lists {
        if parse_cpus(list).ok() != want {
            return Err(format!("parse_cpus({list:?}) = {:?}, want {want:?}", parse_cpus(list)));
        }
    }
    Ok(())
}

/// Whether `perf stat -x, -e <events>` counts all of `events` here.
fn perf_counts(events: &str) -> bool {
    Command::new("perf")
        .args(["stat", "-x,", "-e", events, "--", "true"])
        .stdout(Stdio::null())
        .output()
        .map(|o| {
            let err = String::from_utf8_lossy(&o.stderr);
            o.status.success() && events.split(',').all(|e| err.contains(e))
        })
        .unwrap_or(false)
}

/// The perf `-e` list for `uring`.
fn perf_events(uring: bool) -> String {
    let mut ev = vec![SYSCALL_EVENT];
    if uring {
        ev.extend(URING_EVENTS);
    }
    ev.join(",")
}

pub fn probe_systool(want: Option<&str>) -> (SysTool, String) {
    if want != Some("strace") {
        if perf_counts(&perf_events(true)) {
            return (
                SysTool::Perf { uring: true },
                format!("perf stat -e {} -p <server>", perf_events(true)),
            );
        }
        if perf_counts(SYSCALL_EVENT) {
            return (
                SysTool::Perf { uring: false },
                format!(
                    "perf stat -e {SYSCALL_EVENT} -p <server>; the io_uring tracepoints ({}) are unavailable here, so SQEs, poll arms and io-wq punts are n/a",
                    URING_EVENTS.join(", ")
                ),
            );
        }
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
            "strace -c -f -p <server> (ptrace slows the server during that window; io_uring events n/a)".into(),
        );
    }
    (
        SysTool::None,
        "n/a: neither `perf stat -e raw_syscalls:sys_enter` nor `strace` works here".into(),
    )
}

/// A running syscall (and io_uring event) counter attached to `pid`.
pub struct SysCount {
    child: Child,
    tool: SysTool,
    file: std::path::PathBuf,
}

impl SysCount {
    pub fn start(tool: SysTool, pid: u32) -> Option<SysCount> {
        let file = std::env::temp_dir().join(format!("ringloop-compare-{}-{pid}.txt", std::process::id()));
        let p = pid.to_string();
        let f = file.to_str()?.to_string();
        let mut cmd = match tool {
            SysTool::Perf { uring } => {
                let mut c = Command::new("perf");
                c.args(["stat", "-x,", "-e", &perf_events(uring), "-o", &f, "-p", &p]);
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

    /// Stops counting; the counts of the window (all `None` if the tool
    /// left no output).
    pub fn stop(mut self) -> Counts {
        // SAFETY: signals our own child process by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let Ok(text) = std::fs::read_to_string(&self.file) else {
            return Counts::default();
        };
        let _ = std::fs::remove_file(&self.file);
        match self.tool {
            SysTool::Perf { .. } => parse_perf(&text),
            SysTool::Strace => parse_strace(&text),
            SysTool::None => Counts::default(),
        }
    }
}

pub fn machine() -> Vec<(&'static str, String)> {
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
