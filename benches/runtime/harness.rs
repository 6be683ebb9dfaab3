//! What a benchmark is: the runtimes, sizes and timings, the `Bench`
//! entry, and the latency samples a run hands to the harness.

use super::*;

/// The runtimes a benchmark can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rt {
    /// ringloop, `DriverChoice::Uring`.
    Uring,
    /// ringloop, `DriverChoice::Fallback` (epoll).
    Fallback,
    /// tokio current_thread (time enabled) + `LocalSet`, tasks via `spawn_local`.
    TokioLocal,
    /// tokio current_thread (time enabled), tasks via `tokio::spawn`.
    TokioSpawn,
}

impl Rt {
    /// Criterion function id (also a directory name under `target/criterion/<group>/`).
    pub fn id(self) -> &'static str {
        match self {
            Rt::Uring => "ringloop-uring",
            Rt::Fallback => "ringloop-fallback",
            Rt::TokioLocal => "tokio-ct-local",
            Rt::TokioSpawn => "tokio-ct-spawn",
        }
    }

    pub fn is_ringloop(self) -> bool {
        matches!(self, Rt::Uring | Rt::Fallback)
    }
}

/// Result of one run: wall time of the measured region, or why it failed.
pub type Sample = Result<Duration, String>;

/// How much work one call of a workload does: `iters` criterion iterations
/// of `per_iter` operations each.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub iters: u64,
    pub per_iter: u64,
}

impl Size {
    /// Operations in this call.
    pub fn ops(self) -> u64 {
        self.iters * self.per_iter
    }
}

/// Criterion settings of one group (full run; `--quick` is criterion's own
/// adaptive mode, capped by `measure`). Criterion plans its iteration counts
/// from the wall time of the warm-up calls (`iter_custom`'s warm-up times the
/// whole closure, runtime setup included), so these are wall times whatever
/// the workload returns.
#[derive(Clone, Copy)]
pub struct Timing {
    pub warm_up: Duration,
    pub measure: Duration,
    pub samples: usize,
    /// `SamplingMode::Flat` (same iteration count in every sample; for long
    /// iterations), else criterion's automatic choice (linear).
    pub flat: bool,
}

/// Per-operation workloads (tens of ns to µs per iteration).
pub const FAST: Timing = Timing {
    warm_up: Duration::from_millis(1000),
    measure: Duration::from_millis(2500),
    samples: 20,
    flat: false,
};

/// Batch workloads (tens to hundreds of ms per iteration): flat sampling.
pub const BATCH: Timing = Timing {
    warm_up: Duration::from_millis(1000),
    measure: Duration::from_millis(3000),
    samples: 10,
    flat: true,
};

/// `sleep(1ms)`: ~1 ms per iteration.
pub const SLEEPS: Timing = Timing {
    warm_up: Duration::from_millis(500),
    measure: Duration::from_millis(3000),
    samples: 10,
    flat: false,
};

/// Cross-thread wake latency: ~5 µs per wake, but ~250 µs of wall time
/// (the remote thread's pause), which is what criterion plans with.
pub const XLAT: Timing = Timing {
    warm_up: Duration::from_millis(500),
    measure: Duration::from_millis(3000),
    samples: 10,
    flat: false,
};

/// `--quick` cap for the latency groups, which also run until it (see the
/// module docs).
pub const QUICK_LATENCY_CAP: Duration = Duration::from_secs(1);

pub struct Bench {
    /// Criterion group name.
    pub group: &'static str,
    pub runtimes: &'static [Rt],
    /// The tokio runtime the ratio column divides by.
    pub baseline: Option<Rt>,
    /// Operations per criterion iteration under `cargo bench`.
    pub per_iter: u64,
    /// Operations per iteration in the `cargo test` smoke run (one iteration).
    pub smoke_per_iter: u64,
    /// What one operation is (for the table).
    pub op: &'static str,
    pub timing: Timing,
    /// What exactly is measured (printed under the table).
    pub note: &'static str,
    pub run: fn(Rt, Size) -> Sample,
    pub kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Throughput,
    /// The run also records per-sample latencies with [`record_latencies`].
    Latency,
}

thread_local! {
    /// Latency samples (seconds, may be negative) of the last run of a
    /// [`Kind::Latency`] workload; taken by the harness after each run.
    static LATENCIES: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// Hands one run's latency samples to the harness.
pub fn record_latencies(v: Vec<f64>) {
    LATENCIES.with(|l| *l.borrow_mut() = v);
}

pub fn take_latencies() -> Vec<f64> {
    LATENCIES.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

pub const ALL: &[Rt] = &[Rt::Uring, Rt::Fallback, Rt::TokioLocal, Rt::TokioSpawn];
pub const RINGLOOP_ONLY: &[Rt] = &[Rt::Uring, Rt::Fallback];
pub const LOCAL: &[Rt] = &[Rt::Uring, Rt::Fallback, Rt::TokioLocal];
pub const XTHREAD: &[Rt] = &[Rt::Uring, Rt::Fallback, Rt::TokioSpawn];

pub const SPAWN_BATCH: u64 = 100_000;
pub const CALL_SOON_BATCH: u64 = 1_000_000;
pub const TIMER_BATCH: u64 = 1_000_000;
pub const GATHER_SIZE: u64 = 10_000;
