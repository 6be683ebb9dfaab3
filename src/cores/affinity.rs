//! CPU pinning of the loop threads (`sched_setaffinity` on Linux).

use std::io;

/// Which CPU each loop thread is pinned to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Pinning {
    /// No pinning: the scheduler places the threads (default).
    #[default]
    Off,
    /// Loop `i` is pinned to the `i`-th CPU (modulo their number) of the
    /// CPUs the process may run on at start.
    On,
    /// Loop `i` is pinned to `cpus[i % cpus.len()]` (CPU numbers as the
    /// kernel counts them).
    Cpus(Vec<usize>),
}

impl Pinning {
    /// The CPU loop `index` goes to, `None` when not pinned.
    pub(super) fn cpu_for(&self, index: usize) -> io::Result<Option<usize>> {
        match self {
            Pinning::Off => Ok(None),
            Pinning::On => {
                let cpus = allowed_cpus()?;
                Ok(Some(cpus[index % cpus.len()]))
            }
            Pinning::Cpus(cpus) if cpus.is_empty() => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ringloop::cores: empty CPU list",
            )),
            Pinning::Cpus(cpus) => Ok(Some(cpus[index % cpus.len()])),
        }
    }
}

/// The CPUs the calling thread may run on.
#[cfg(target_os = "linux")]
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads the set; `cpu` is below its capacity.
    let cpus: Vec<usize> = (0..max).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect();
    if cpus.is_empty() {
        return Err(io::Error::other("ringloop::cores: empty CPU affinity mask"));
    }
    Ok(cpus)
}

/// The CPUs the calling thread may run on (without affinity support: as
/// many as `available_parallelism`, numbered from 0).
#[cfg(not(target_os = "linux"))]
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    Ok((0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect())
}

/// Pins the calling thread to `cpu`.
#[cfg(target_os = "linux")]
pub(super) fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ringloop::cores: CPU {cpu} is out of range"),
        ));
    }
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` was checked against the set's capacity above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t of the size passed; 0 = this thread.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pinning needs `sched_setaffinity` (Linux).
#[cfg(not(target_os = "linux"))]
pub(super) fn pin_current_thread(_cpu: usize) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "ringloop::cores: CPU pinning is only implemented on Linux",
    ))
}

/// The CPU the calling thread runs on now (Linux), `None` elsewhere.
pub fn current_cpu() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_getcpu takes no arguments and only returns a number.
        let cpu = unsafe { libc::sched_getcpu() };
        usize::try_from(cpu).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}
