//! Process and machine measurements for the comparative bench: CPU pinning,
//! per-process CPU time and context switches from `/proc`, syscall counting
//! with `perf stat` or `strace`, and the machine description.

use std::process::{Child, Command, Stdio};

pub fn pin_to(cpu: usize) -> bool {
    // SAFETY: `cpu_set_t` is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE (0 or 1).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pins the calling thread (pid 0) with a valid set.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
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

/// How syscalls are counted.
#[derive(Clone, Copy, PartialEq)]
pub enum SysTool {
    Perf,
    Strace,
    None,
}

pub fn probe_systool(want: Option<&str>) -> (SysTool, String) {
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

    pub fn stop(mut self) -> Option<u64> {
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
