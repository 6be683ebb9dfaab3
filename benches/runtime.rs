//! Runtime micro-benchmarks: ringloop (io_uring and readiness backends) vs
//! tokio `current_thread`, driven by criterion.
//!
//! ```text
//! cargo bench --bench runtime                      # full run (~3 min on 2 cores)
//! cargo bench --bench runtime -- --quick           # criterion's --quick (25-40 s)
//! cargo bench --bench runtime -- spawn_join        # criterion filter (a regex on "group/function")
//! cargo bench --bench runtime -- 'yield_.*/ringloop'
//! taskset -c 1 cargo bench --bench runtime         # pinned to one core (both threads of the
//!                                                  # cross-thread benchmarks share it)
//! cargo test --bench runtime                       # smoke run: every workload once, tiny
//! ```
//!
//! # Method
//!
//! One criterion `BenchmarkGroup` per benchmark and one function per runtime:
//! `ringloop-uring` (`DriverChoice::Uring`), `ringloop-fallback`
//! (`DriverChoice::Fallback`, epoll), `tokio-ct-local` (tokio current_thread
//! with time enabled, tasks on a `LocalSet` via `spawn_local`: the analogue of
//! ringloop's !Send tasks) and `tokio-ct-spawn` (the same runtime,
//! `tokio::spawn`). Every function uses `iter_custom`: for `iters` criterion
//! iterations it builds a fresh runtime, runs `iters` iterations' worth of the
//! workload inside it (one `run_until_complete` / `block_on`) and returns the
//! wall time of that run alone (runtime setup and teardown are not timed).
//! The workload's result is checked on every call; a wrong result panics, so
//! it fails `cargo test` as well as `cargo bench`. A runtime that cannot be
//! built here (no io_uring) is reported and skipped.
//!
//! A criterion iteration is one operation for the streaming workloads (one
//! yield, one callback, one round trip, ...), and one fixed-size batch where
//! the workload is defined by how many things are outstanding at once
//! (`spawn_join`: 100k tasks spawned then joined; `call_soon_batch`: 1M
//! callbacks queued; `timers`: 1M timers, 90% cancelled; `gather`: 10k
//! futures). `Throughput::Elements` is the number of operations per
//! iteration, so criterion prints ops/s and the summary divides its estimate
//! down to one operation. Group settings (warm-up, measurement time, sample
//! count; flat sampling for the batch groups, whose iterations take tens to
//! hundreds of ms) are in [`BENCHES`]; they keep the full run around 3
//! minutes on the 2-core machine.
//!
//! The latency benchmarks return a time criterion can estimate a mean of:
//! `sleep_1ms_lateness` the wall time of the sequential sleeps (so its
//! estimate is 1 ms + mean lateness + loop overhead per sleep),
//! `xthread_wake_latency` the sum of the per-wake latencies (the 200 µs
//! pauses between wakes are not counted; criterion still plans the group's
//! iteration counts from wall time, as for every group). Each call also hands
//! its per-sample latencies to the harness, which keeps those of the calls
//! criterion measured (the last `sample_size` calls; every call under
//! `--quick`, which has no warm-up) and prints p50/p99 per runtime. Under
//! `--quick` the latency groups run until their 1 s cap so the percentiles
//! rest on ~500 (tokio's sleeps take 2 ms) to ~4000 samples.
//!
//! After criterion finishes, `main` prints one Markdown summary: per
//! benchmark and runtime, criterion's point estimate per operation (the
//! "typical" estimate criterion prints: the slope under linear sampling,
//! else the mean, read from `<target>/criterion/<group>/<function>/new/estimates.json`
//! of this run) with its 95% confidence interval, ops/s, and the ratio to
//! tokio current_thread (the LocalSet row for !Send workloads, the spawn row
//! for the cross-thread ones); then the p50/p99 latency table and what each
//! benchmark measures. It is also written to
//! `<target>/ringloop-bench/runtime.md` (`<target>` = `$CARGO_TARGET_DIR`,
//! else `target/`; `runtime-smoke.md` for the smoke run). Criterion's own
//! directory follows `$CRITERION_HOME` if set; if the estimates cannot be
//! found there the row falls back to this harness's own measurement and says
//! so.
//!
//! Without `--bench` (`cargo test`) criterion runs each function once with
//! `iters = 1`, and an iteration is then a tiny workload (at most 1000
//! operations), so the whole smoke run takes well under a second.
//!
//! # Benchmarks (details in each entry's `note`)
//!
//! - `spawn_join`: spawn 100k tasks, then await each handle (per task).
//! - `spawn_detached`: spawn 100k tasks, drop their handles, yield until all
//!   ran (per task).
//! - `call_soon_batch` / `call_soon_chain`: ringloop callbacks queued 1M at a
//!   time / each scheduling the next (per callback; no tokio analogue).
//! - `yield_1task` / `yield_2tasks` / `yield_100tasks`: `yield_now()` by one
//!   task, by two tasks in ping-pong, by 100 tasks (per yield).
//! - `timers`: 1M timers inserted, 90% cancelled, 10% awaited (per timer).
//! - `xthread_wake`: cross-thread round trip into a parked loop.
//! - `lock_pingpong` / `queue_pingpong`: lock handoff / token round trip
//!   between two tasks.
//! - `gather`: gather of 10k futures (per future).
//! - `sleep_1ms_lateness`, `xthread_wake_latency`: latency distributions.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::hint::black_box;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::mpsc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use ringloop::{DriverChoice, EventLoop};

/// The runtimes a benchmark can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rt {
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
    fn id(self) -> &'static str {
        match self {
            Rt::Uring => "ringloop-uring",
            Rt::Fallback => "ringloop-fallback",
            Rt::TokioLocal => "tokio-ct-local",
            Rt::TokioSpawn => "tokio-ct-spawn",
        }
    }

    fn is_ringloop(self) -> bool {
        matches!(self, Rt::Uring | Rt::Fallback)
    }
}

/// Result of one run: wall time of the measured region, or why it failed.
type Sample = Result<Duration, String>;

/// How much work one call of a workload does: `iters` criterion iterations
/// of `per_iter` operations each.
#[derive(Clone, Copy, Debug)]
struct Size {
    iters: u64,
    per_iter: u64,
}

impl Size {
    /// Operations in this call.
    fn ops(self) -> u64 {
        self.iters * self.per_iter
    }
}

/// Criterion settings of one group (full run; `--quick` is criterion's own
/// adaptive mode, capped by `measure`). Criterion plans its iteration counts
/// from the wall time of the warm-up calls (`iter_custom`'s warm-up times the
/// whole closure, runtime setup included), so these are wall times whatever
/// the workload returns.
#[derive(Clone, Copy)]
struct Timing {
    warm_up: Duration,
    measure: Duration,
    samples: usize,
    /// `SamplingMode::Flat` (same iteration count in every sample; for long
    /// iterations), else criterion's automatic choice (linear).
    flat: bool,
}

/// Per-operation workloads (tens of ns to µs per iteration).
const FAST: Timing = Timing {
    warm_up: Duration::from_millis(1000),
    measure: Duration::from_millis(2500),
    samples: 20,
    flat: false,
};

/// Batch workloads (tens to hundreds of ms per iteration): flat sampling.
const BATCH: Timing = Timing {
    warm_up: Duration::from_millis(1000),
    measure: Duration::from_millis(3000),
    samples: 10,
    flat: true,
};

/// `sleep(1ms)`: ~1 ms per iteration.
const SLEEPS: Timing = Timing {
    warm_up: Duration::from_millis(500),
    measure: Duration::from_millis(3000),
    samples: 10,
    flat: false,
};

/// Cross-thread wake latency: ~5 µs per wake, but ~250 µs of wall time
/// (the remote thread's pause), which is what criterion plans with.
const XLAT: Timing = Timing {
    warm_up: Duration::from_millis(500),
    measure: Duration::from_millis(3000),
    samples: 10,
    flat: false,
};

/// `--quick` cap for the latency groups, which also run until it (see the
/// module docs).
const QUICK_LATENCY_CAP: Duration = Duration::from_secs(1);

struct Bench {
    /// Criterion group name.
    group: &'static str,
    runtimes: &'static [Rt],
    /// The tokio runtime the ratio column divides by.
    baseline: Option<Rt>,
    /// Operations per criterion iteration under `cargo bench`.
    per_iter: u64,
    /// Operations per iteration in the `cargo test` smoke run (one iteration).
    smoke_per_iter: u64,
    /// What one operation is (for the table).
    op: &'static str,
    timing: Timing,
    /// What exactly is measured (printed under the table).
    note: &'static str,
    run: fn(Rt, Size) -> Sample,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
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
fn record_latencies(v: Vec<f64>) {
    LATENCIES.with(|l| *l.borrow_mut() = v);
}

fn take_latencies() -> Vec<f64> {
    LATENCIES.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

const ALL: &[Rt] = &[Rt::Uring, Rt::Fallback, Rt::TokioLocal, Rt::TokioSpawn];
const RINGLOOP_ONLY: &[Rt] = &[Rt::Uring, Rt::Fallback];
const LOCAL: &[Rt] = &[Rt::Uring, Rt::Fallback, Rt::TokioLocal];
const XTHREAD: &[Rt] = &[Rt::Uring, Rt::Fallback, Rt::TokioSpawn];

const SPAWN_BATCH: u64 = 100_000;
const CALL_SOON_BATCH: u64 = 1_000_000;
const TIMER_BATCH: u64 = 1_000_000;
const GATHER_SIZE: u64 = 10_000;

const BENCHES: &[Bench] = &[
    Bench {
        group: "spawn_join",
        runtimes: ALL,
        baseline: Some(Rt::TokioLocal),
        per_iter: SPAWN_BATCH,
        smoke_per_iter: 100,
        op: "task",
        timing: BATCH,
        note: "an iteration spawns a batch of tasks (100k in a benchmark run) returning their \
               index, then awaits every handle in order and sums. ringloop: `ringloop::spawn` \
               inside `run_until_complete`; tokio-ct-local: `task::spawn_local` (the analogue: \
               ringloop tasks are !Send); tokio-ct-spawn: `tokio::spawn` on the same runtime, \
               for reference. In every runtime the driving future is itself a spawned task. Per \
               op = per task.",
        run: spawn_join,
        kind: Kind::Throughput,
    },
    Bench {
        group: "spawn_detached",
        runtimes: LOCAL,
        baseline: Some(Rt::TokioLocal),
        per_iter: SPAWN_BATCH,
        smoke_per_iter: 100,
        op: "task",
        timing: BATCH,
        note: "an iteration spawns a batch of tasks (100k in a benchmark run) and drops their \
               handles at once (detached); each task adds its index to a shared `Rc<Cell>`; the \
               spawner then yields until every task has run and checks the sum. ringloop: \
               `ringloop::spawn(..).detach()`; tokio-ct-local: `task::spawn_local` with the \
               JoinHandle dropped. Per op = per task.",
        run: spawn_detached,
        kind: Kind::Throughput,
    },
    Bench {
        group: "call_soon_batch",
        runtimes: RINGLOOP_ONLY,
        baseline: None,
        per_iter: CALL_SOON_BATCH,
        smoke_per_iter: 1_000,
        op: "callback",
        timing: BATCH,
        note: "an iteration: one task schedules a batch of `lp.call_soon` callbacks (1M in a \
               benchmark run; each captures an `Rc<Cell>` counter and increments it), then yields \
               once; all of them run in the next \
               loop iteration. tokio has no callback queue; spawning tiny tasks would measure task \
               creation, not callbacks, so no tokio row.",
        run: call_soon_batch,
        kind: Kind::Throughput,
    },
    Bench {
        group: "call_soon_chain",
        runtimes: RINGLOOP_ONLY,
        baseline: None,
        per_iter: 1,
        smoke_per_iter: 1_000,
        op: "callback",
        timing: FAST,
        note: "callbacks in a chain: each one `call_soon`s the next, so every callback costs one \
               full loop iteration (`_run_once`, including its zero-timeout driver poll). \
               No tokio analogue.",
        run: call_soon_chain,
        kind: Kind::Throughput,
    },
    Bench {
        group: "yield_1task",
        runtimes: ALL,
        baseline: Some(Rt::TokioLocal),
        per_iter: 1,
        smoke_per_iter: 1_000,
        op: "yield",
        timing: FAST,
        note: "one task doing `yield_now().await` in a loop (ringloop: `ringloop::yield_now`, one \
               loop iteration each; tokio: `tokio::task::yield_now`, which defers the wake until \
               after a zero-timeout park of the driver).",
        run: yield_one,
        kind: Kind::Throughput,
    },
    Bench {
        group: "yield_2tasks",
        runtimes: ALL,
        baseline: Some(Rt::TokioLocal),
        per_iter: 2,
        smoke_per_iter: 1_000,
        op: "yield",
        timing: FAST,
        note: "yield ping-pong: two tasks each doing `yield_now().await` in a loop, so every yield \
               hands the thread to the other task through the ready queue. An iteration is one \
               yield by each task.",
        run: yield_two,
        kind: Kind::Throughput,
    },
    Bench {
        group: "yield_100tasks",
        runtimes: ALL,
        baseline: Some(Rt::TokioLocal),
        per_iter: 100,
        smoke_per_iter: 1_000,
        op: "yield",
        timing: FAST,
        note: "100 tasks each doing `yield_now().await` in a loop (wake-ups through the ready \
               queue, per-loop-iteration overhead amortised over 100 tasks). An iteration is one \
               yield by each task.",
        run: yield_hundred,
        kind: Kind::Throughput,
    },
    Bench {
        group: "timers",
        runtimes: LOCAL,
        baseline: Some(Rt::TokioLocal),
        per_iter: TIMER_BATCH,
        smoke_per_iter: 1_000,
        op: "timer",
        timing: BATCH,
        note: "an iteration creates a batch of sleep futures (1M in a benchmark run; 1-2 ms, \
               scrambled deadlines) and polls each once so it registers its timer; drops 90% \
               (cancel); awaits the remaining 10% (already due by then at this size; in the tiny \
               smoke run they are not). ringloop: `ringloop::sleep` (binary heap + slab); tokio: \
               `tokio::time::sleep` (hierarchical wheel). Per op = per timer.",
        run: timers,
        kind: Kind::Throughput,
    },
    Bench {
        group: "xthread_wake",
        runtimes: XTHREAD,
        baseline: Some(Rt::TokioSpawn),
        per_iter: 1,
        smoke_per_iter: 20,
        op: "round trip",
        timing: FAST,
        note: "another thread does sequential round trips to a sleeping loop: ringloop \
               `LoopHandle::call_soon_threadsafe(closure)` vs tokio `Handle::spawn(async block)` \
               (a full task, the closest tokio API); the loop side answers on a std mpsc channel \
               the remote thread blocks on. Timed on the remote thread. Under `taskset -c 1` both \
               threads share one core, so this includes two context switches per round trip.",
        run: xthread,
        kind: Kind::Throughput,
    },
    Bench {
        group: "lock_pingpong",
        runtimes: LOCAL,
        baseline: Some(Rt::TokioLocal),
        per_iter: 2,
        smoke_per_iter: 100,
        op: "acquisition",
        timing: FAST,
        note: "two tasks A and B each loop: `let g = lock.lock().await; <check the previous holder \
               was the other task; record self>; drop(g)`. The driving task takes the lock first, \
               spawns A then B, yields until both are queued on it, then releases: from then on \
               every release hands the lock to the queued peer (FIFO, no barging, in both \
               `ringloop::sync::Lock` and `tokio::sync::Mutex`) and the releaser's next `lock()` \
               queues behind it, so holders strictly alternate (checked; a violation fails the run). \
               An iteration is one acquisition by each task; each acquisition is one handoff + one \
               task switch.",
        run: lock_pingpong,
        kind: Kind::Throughput,
    },
    Bench {
        group: "queue_pingpong",
        runtimes: LOCAL,
        baseline: Some(Rt::TokioLocal),
        per_iter: 1,
        smoke_per_iter: 100,
        op: "round trip",
        timing: FAST,
        note: "round trips of a token between two tasks over two bounded queues of capacity 1: \
               ping does `q1.put(i); q2.get()`, pong does `q1.get(); q2.put(x + 1)` (results summed \
               and checked). ringloop: `ringloop::sync::Queue::new(1)` (one queue object serves both \
               ends); tokio: two `tokio::sync::mpsc::channel(1)` (Sender/Receiver).",
        run: queue_pingpong,
        kind: Kind::Throughput,
    },
    Bench {
        group: "gather",
        runtimes: ALL,
        baseline: Some(Rt::TokioLocal),
        per_iter: GATHER_SIZE,
        smoke_per_iter: 100,
        op: "future",
        timing: FAST,
        note: "an iteration runs a batch of tiny futures (10 000 in a benchmark run; `async move \
               { i }`) concurrently and collects their outputs in order into a Vec, then sums. \
               ringloop: `ringloop::gather(futs).await` (spawns each as a task plus one gather \
               task that collects results). tokio has no gather; the closest is spawning each \
               (`spawn_local` / `tokio::spawn`) and awaiting the JoinHandles in order into a \
               Vec: same task count, no extra collector task. Per op = per future.",
        run: gather_bench,
        kind: Kind::Throughput,
    },
    Bench {
        group: "sleep_1ms_lateness",
        runtimes: LOCAL,
        baseline: Some(Rt::TokioLocal),
        per_iter: 1,
        smoke_per_iter: 5,
        op: "sleep",
        timing: SLEEPS,
        note: "one task does sequential `sleep(1ms).await` (nothing else runs); lateness = \
               `Instant::now()` after the await − (`Instant::now()` just before creating the sleep \
               + 1 ms). Negative means woken early (a runtime measuring the deadline from a cached \
               loop time). tokio's timer wheel has 1 ms resolution and rounds deadlines up; \
               ringloop uses the exact deadline (io_uring timeout / epoll_wait timeout). \
               Criterion's time per op is the wall time per sleep (1 ms + lateness + overhead).",
        run: sleep_lateness,
        kind: Kind::Latency,
    },
    Bench {
        group: "xthread_wake_latency",
        runtimes: XTHREAD,
        baseline: Some(Rt::TokioSpawn),
        per_iter: 1,
        smoke_per_iter: 5,
        op: "wake",
        timing: XLAT,
        note: "another thread sends one-way wake-ups to a loop that is parked: it takes `t0 = \
               Instant::now()`, calls ringloop `LoopHandle::call_soon_threadsafe(closure)` / tokio \
               `Handle::spawn(async block)`, and the closure/task measures `t0.elapsed()` on the \
               loop thread and sends it back over a std mpsc channel. After each reply the remote \
               thread sleeps 200 µs so the loop is back in its blocking wait when the next wake \
               comes. Under `taskset -c 1` both threads share one core, so this includes the \
               wake-up's context switch. Criterion's time per op is the mean latency (the pauses \
               are not counted); a handful of millisecond stalls (the other core's load, \
               preemption) moves that mean a lot between runs, so compare runtimes by the p50/p99 \
               table.",
        run: xthread_latency,
        kind: Kind::Latency,
    },
];

// ---------------------------------------------------------------- runners

fn ringloop_loop(rt: Rt) -> Result<EventLoop, String> {
    let choice = match rt {
        Rt::Uring => DriverChoice::Uring,
        Rt::Fallback => DriverChoice::Fallback,
        _ => unreachable!("not a ringloop runtime"),
    };
    EventLoop::builder()
        .driver(choice)
        .build()
        .map_err(|e| format!("unavailable: {e}"))
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// Times `run_until_complete(fut)` on a fresh loop (loop setup and teardown
/// are not timed) and checks the result.
fn time_ringloop<Fut>(rt: Rt, expect: u64, fut: Fut) -> Sample
where
    Fut: Future<Output = u64> + 'static,
{
    let lp = ringloop_loop(rt)?;
    let t0 = Instant::now();
    let out = lp.run_until_complete(fut).map_err(|e| e.to_string())?;
    let dt = t0.elapsed();
    check(out, expect)?;
    drop(lp);
    Ok(dt)
}

/// Times `fut` run as a task on a fresh tokio current_thread runtime:
/// `spawn_local` on a `LocalSet` for [`Rt::TokioLocal`].
fn time_tokio_local<Fut>(expect: u64, fut: Fut) -> Sample
where
    Fut: Future<Output = u64> + 'static,
{
    let rt = tokio_rt();
    let local = tokio::task::LocalSet::new();
    let t0 = Instant::now();
    let out = local.block_on(&rt, async move { tokio::task::spawn_local(fut).await.expect("join") });
    let dt = t0.elapsed();
    check(out, expect)?;
    drop(local);
    drop(rt);
    Ok(dt)
}

/// Like [`time_tokio_local`] with `tokio::spawn` ([`Rt::TokioSpawn`]).
fn time_tokio_spawn<Fut>(expect: u64, fut: Fut) -> Sample
where
    Fut: Future<Output = u64> + Send + 'static,
{
    let rt = tokio_rt();
    let t0 = Instant::now();
    let out = rt.block_on(async move { tokio::spawn(fut).await.expect("join") });
    let dt = t0.elapsed();
    check(out, expect)?;
    drop(rt);
    Ok(dt)
}

fn check(out: u64, expect: u64) -> Result<(), String> {
    if black_box(out) == expect {
        Ok(())
    } else {
        Err(format!("wrong result {out}, expected {expect}"))
    }
}

fn not_run(rt: Rt) -> Sample {
    Err(format!("{} is not a runtime of this benchmark", rt.id()))
}

// ------------------------------------------------------------- benchmarks

/// `size.iters` rounds of: spawn `size.per_iter` tasks, join them all.
fn spawn_join(rt: Rt, size: Size) -> Sample {
    let (rounds, n) = (size.iters, size.per_iter);
    let expect = rounds * (n * (n - 1) / 2);
    match rt {
        Rt::Uring | Rt::Fallback => time_ringloop(rt, expect, async move {
            let mut sum = 0;
            for _ in 0..rounds {
                let handles: Vec<_> = (0..n).map(|i| ringloop::spawn(async move { i })).collect();
                for h in handles {
                    sum += h.await.expect("task");
                }
            }
            sum
        }),
        Rt::TokioLocal => time_tokio_local(expect, async move {
            let mut sum = 0;
            for _ in 0..rounds {
                let handles: Vec<_> = (0..n).map(|i| tokio::task::spawn_local(async move { i })).collect();
                for h in handles {
                    sum += h.await.expect("task");
                }
            }
            sum
        }),
        Rt::TokioSpawn => time_tokio_spawn(expect, async move {
            let mut sum = 0;
            for _ in 0..rounds {
                let handles: Vec<_> = (0..n).map(|i| tokio::spawn(async move { i })).collect();
                for h in handles {
                    sum += h.await.expect("task");
                }
            }
            sum
        }),
    }
}

/// `size.iters` rounds of: spawn `size.per_iter` detached tasks, yield
/// until all of them ran.
fn spawn_detached(rt: Rt, size: Size) -> Sample {
    let (rounds, n) = (size.iters, size.per_iter);
    let expect = rounds * (n * (n - 1) / 2);
    match rt {
        Rt::Uring | Rt::Fallback => time_ringloop(rt, expect, async move {
            let sum = Rc::new(Cell::new(0u64));
            for r in 0..rounds {
                for i in 0..n {
                    let sum = sum.clone();
                    ringloop::spawn(async move { sum.set(sum.get() + i) }).detach();
                }
                while sum.get() < (r + 1) * (n * (n - 1) / 2) {
                    ringloop::yield_now().await;
                }
            }
            sum.get()
        }),
        Rt::TokioLocal => time_tokio_local(expect, async move {
            let sum = Rc::new(Cell::new(0u64));
            for r in 0..rounds {
                for i in 0..n {
                    let sum = sum.clone();
                    drop(tokio::task::spawn_local(async move { sum.set(sum.get() + i) }));
                }
                while sum.get() < (r + 1) * (n * (n - 1) / 2) {
                    tokio::task::yield_now().await;
                }
            }
            sum.get()
        }),
        _ => not_run(rt),
    }
}

/// `size.iters` rounds of: queue `size.per_iter` callbacks, yield once.
fn call_soon_batch(rt: Rt, size: Size) -> Sample {
    let (rounds, n) = (size.iters, size.per_iter);
    time_ringloop(rt, rounds * n, async move {
        let lp = ringloop::current().expect("running loop");
        let counter = Rc::new(Cell::new(0u64));
        for _ in 0..rounds {
            for _ in 0..n {
                let c = counter.clone();
                lp.call_soon(move || c.set(c.get() + 1)).expect("call_soon");
            }
            // Our own wake-up is queued after the N callbacks: FIFO.
            ringloop::yield_now().await;
        }
        counter.get()
    })
}

fn chain_step(lp: EventLoop, counter: Rc<Cell<u64>>, left: u64) {
    counter.set(counter.get() + 1);
    if left > 1 {
        let next = lp.clone();
        lp.call_soon(move || chain_step(next, counter, left - 1))
            .expect("call_soon");
    } else {
        lp.stop();
    }
}

fn call_soon_chain(rt: Rt, size: Size) -> Sample {
    let n = size.ops();
    let lp = ringloop_loop(rt)?;
    let counter = Rc::new(Cell::new(0u64));
    let (c, next) = (counter.clone(), lp.clone());
    lp.call_soon(move || chain_step(next, c, n))
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    lp.run_forever().map_err(|e| e.to_string())?;
    let dt = t0.elapsed();
    check(counter.get(), n)?;
    Ok(dt)
}

fn yield_one(rt: Rt, size: Size) -> Sample {
    let n = size.ops();
    match rt {
        Rt::Uring | Rt::Fallback => time_ringloop(rt, n, async move {
            for _ in 0..n {
                ringloop::yield_now().await;
            }
            n
        }),
        Rt::TokioLocal => time_tokio_local(n, async move {
            for _ in 0..n {
                tokio::task::yield_now().await;
            }
            n
        }),
        Rt::TokioSpawn => time_tokio_spawn(n, async move {
            for _ in 0..n {
                tokio::task::yield_now().await;
            }
            n
        }),
    }
}

fn yield_two(rt: Rt, size: Size) -> Sample {
    yield_many(rt, size, 2)
}

fn yield_hundred(rt: Rt, size: Size) -> Sample {
    yield_many(rt, size, 100)
}

/// `tasks` tasks each doing `size.ops() / tasks` yields.
fn yield_many(rt: Rt, size: Size, tasks: u64) -> Sample {
    let per = size.ops() / tasks;
    let expect = per * tasks;
    match rt {
        Rt::Uring | Rt::Fallback => time_ringloop(rt, expect, async move {
            let hs: Vec<_> = (0..tasks)
                .map(|_| {
                    ringloop::spawn(async move {
                        for _ in 0..per {
                            ringloop::yield_now().await;
                        }
                        per
                    })
                })
                .collect();
            let mut sum = 0;
            for h in hs {
                sum += h.await.expect("task");
            }
            sum
        }),
        Rt::TokioLocal => time_tokio_local(expect, async move {
            let hs: Vec<_> = (0..tasks)
                .map(|_| {
                    tokio::task::spawn_local(async move {
                        for _ in 0..per {
                            tokio::task::yield_now().await;
                        }
                        per
                    })
                })
                .collect();
            let mut sum = 0;
            for h in hs {
                sum += h.await.expect("task");
            }
            sum
        }),
        Rt::TokioSpawn => time_tokio_spawn(expect, async move {
            let hs: Vec<_> = (0..tasks)
                .map(|_| {
                    tokio::spawn(async move {
                        for _ in 0..per {
                            tokio::task::yield_now().await;
                        }
                        per
                    })
                })
                .collect();
            let mut sum = 0;
            for h in hs {
                sum += h.await.expect("task");
            }
            sum
        }),
    }
}

/// Polls `f` exactly once (registering its timer), whatever the outcome.
async fn poll_once<F: Future + ?Sized>(mut f: Pin<&mut F>) {
    std::future::poll_fn(|cx| {
        let _ = f.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await
}

/// Timer deadline of the i-th sleep: 1-2 ms, scrambled so the insertion
/// order is not the deadline order.
fn timer_delay(i: u64) -> Duration {
    Duration::from_micros(1000 + (i.wrapping_mul(7919) % 1000))
}

/// `size.iters` rounds of: insert `size.per_iter` timers, cancel 90%, await
/// the rest.
fn timers(rt: Rt, size: Size) -> Sample {
    let (rounds, n) = (size.iters, size.per_iter);
    let expect = rounds * n.div_ceil(10);
    match rt {
        Rt::Uring | Rt::Fallback => time_ringloop(rt, expect, async move {
            let mut fired = 0;
            for _ in 0..rounds {
                let mut v: Vec<Option<ringloop::Sleep>> = Vec::with_capacity(n as usize);
                for i in 0..n {
                    let mut s = ringloop::sleep(timer_delay(i));
                    poll_once(Pin::new(&mut s)).await;
                    v.push(Some(s));
                }
                for (i, s) in v.iter_mut().enumerate() {
                    if i % 10 != 0 {
                        *s = None;
                    }
                }
                for s in v.iter_mut().filter_map(Option::as_mut) {
                    s.await;
                    fired += 1;
                }
            }
            fired
        }),
        Rt::TokioLocal => time_tokio_local(expect, async move {
            let mut fired = 0;
            for _ in 0..rounds {
                // The sleeps are !Unpin: keep them in place in a Vec that never
                // reallocates, and drop them in place (assigning `None`).
                let mut v: Vec<Option<tokio::time::Sleep>> = Vec::with_capacity(n as usize);
                for i in 0..n {
                    v.push(Some(tokio::time::sleep(timer_delay(i))));
                    let s = v.last_mut().and_then(Option::as_mut).expect("just pushed");
                    // SAFETY: `v` has capacity `n` and is never grown past it, so
                    // the element is never moved; it is only dropped in place
                    // (assigning `None`, or dropping `v`).
                    poll_once(unsafe { Pin::new_unchecked(s) }).await;
                }
                for (i, s) in v.iter_mut().enumerate() {
                    if i % 10 != 0 {
                        *s = None;
                    }
                }
                for s in v.iter_mut().filter_map(Option::as_mut) {
                    // SAFETY: as above, the sleep stays in place in `v`.
                    unsafe { Pin::new_unchecked(s) }.await;
                    fired += 1;
                }
            }
            fired
        }),
        Rt::TokioSpawn => not_run(rt),
    }
}

fn xthread(rt: Rt, size: Size) -> Sample {
    let n = size.ops();
    match rt {
        Rt::Uring | Rt::Fallback => {
            let lp = ringloop_loop(rt)?;
            let h = lp.handle();
            let remote = std::thread::spawn(move || {
                let (tx, rx) = mpsc::channel::<()>();
                let t0 = Instant::now();
                for _ in 0..n {
                    let tx = tx.clone();
                    h.call_soon_threadsafe(move || {
                        let _ = tx.send(());
                    })
                    .expect("call_soon_threadsafe");
                    rx.recv().expect("reply");
                }
                let dt = t0.elapsed();
                h.stop().expect("stop");
                dt
            });
            lp.run_forever().map_err(|e| e.to_string())?;
            remote.join().map_err(|_| "remote thread panicked".to_string())
        }
        Rt::TokioSpawn => {
            let rt = tokio_rt();
            let h = rt.handle().clone();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let remote = std::thread::spawn(move || {
                let (tx, rx) = mpsc::channel::<()>();
                let t0 = Instant::now();
                for _ in 0..n {
                    let tx = tx.clone();
                    drop(h.spawn(async move {
                        let _ = tx.send(());
                    }));
                    rx.recv().expect("reply");
                }
                let dt = t0.elapsed();
                let _ = done_tx.send(());
                dt
            });
            rt.block_on(async move { done_rx.await.expect("done") });
            remote.join().map_err(|_| "remote thread panicked".to_string())
        }
        Rt::TokioLocal => not_run(rt),
    }
}

/// Which ping-pong task last held the lock, and how many acquisitions broke
/// strict alternation.
#[derive(Default)]
struct Alternation {
    last: Cell<u8>,
    violations: Cell<u64>,
    count: Cell<u64>,
}

impl Alternation {
    fn acquired(&self, me: u8) {
        if self.last.get() == me {
            self.violations.set(self.violations.get() + 1);
        }
        self.last.set(me);
        self.count.set(self.count.get() + 1);
    }

    /// Acquisition count if the holders strictly alternated, else a value
    /// that fails the check.
    fn result(&self) -> u64 {
        if self.violations.get() == 0 {
            self.count.get()
        } else {
            u64::MAX - self.violations.get()
        }
    }
}

fn lock_pingpong(rt: Rt, size: Size) -> Sample {
    let per = (size.ops() / 2).max(1);
    let expect = per * 2;
    match rt {
        Rt::Uring | Rt::Fallback => time_ringloop(rt, expect, async move {
            let lock = ringloop::sync::Lock::new();
            let alt = Rc::new(Alternation::default());
            let first = lock.try_lock().expect("uncontended");
            let hs: Vec<_> = (1..=2u8)
                .map(|me| {
                    let (lock, alt) = (lock.clone(), alt.clone());
                    ringloop::spawn(async move {
                        for _ in 0..per {
                            let g = lock.lock().await;
                            alt.acquired(me);
                            drop(g);
                        }
                    })
                })
                .collect();
            // One iteration runs A and B up to their first (queued) lock().
            ringloop::yield_now().await;
            drop(first);
            for h in hs {
                h.await.expect("task");
            }
            alt.result()
        }),
        Rt::TokioLocal => time_tokio_local(expect, async move {
            let lock = Rc::new(tokio::sync::Mutex::new(()));
            let alt = Rc::new(Alternation::default());
            let first = lock.try_lock().expect("uncontended");
            let hs: Vec<_> = (1..=2u8)
                .map(|me| {
                    let (lock, alt) = (lock.clone(), alt.clone());
                    tokio::task::spawn_local(async move {
                        for _ in 0..per {
                            let g = lock.lock().await;
                            alt.acquired(me);
                            drop(g);
                        }
                    })
                })
                .collect();
            tokio::task::yield_now().await;
            drop(first);
            for h in hs {
                h.await.expect("task");
            }
            alt.result()
        }),
        Rt::TokioSpawn => not_run(rt),
    }
}

fn queue_pingpong(rt: Rt, size: Size) -> Sample {
    let n = size.ops();
    // Sum of (i + 1) for i in 0..n.
    let expect = n * (n + 1) / 2;
    match rt {
        Rt::Uring | Rt::Fallback => time_ringloop(rt, expect, async move {
            let q1 = ringloop::sync::Queue::<u64>::new(1);
            let q2 = ringloop::sync::Queue::<u64>::new(1);
            let (p1, p2) = (q1.clone(), q2.clone());
            let pong = ringloop::spawn(async move {
                for _ in 0..n {
                    let x = p1.get().await.unwrap();
                    p2.put(x + 1).await.unwrap();
                }
            });
            let mut sum = 0;
            for i in 0..n {
                q1.put(i).await.unwrap();
                sum += q2.get().await.unwrap();
            }
            pong.await.expect("pong");
            sum
        }),
        Rt::TokioLocal => time_tokio_local(expect, async move {
            let (tx1, mut rx1) = tokio::sync::mpsc::channel::<u64>(1);
            let (tx2, mut rx2) = tokio::sync::mpsc::channel::<u64>(1);
            let pong = tokio::task::spawn_local(async move {
                for _ in 0..n {
                    let x = rx1.recv().await.expect("ping");
                    tx2.send(x + 1).await.expect("send");
                }
            });
            let mut sum = 0;
            for i in 0..n {
                tx1.send(i).await.expect("send");
                sum += rx2.recv().await.expect("pong");
            }
            pong.await.expect("pong");
            sum
        }),
        Rt::TokioSpawn => not_run(rt),
    }
}

/// `size.iters` rounds of gathering `size.per_iter` futures.
fn gather_bench(rt: Rt, size: Size) -> Sample {
    let (rounds, size) = (size.iters, size.per_iter);
    let expect = rounds * (size * (size - 1) / 2);
    match rt {
        Rt::Uring | Rt::Fallback => time_ringloop(rt, expect, async move {
            let mut sum = 0;
            for _ in 0..rounds {
                let v = ringloop::gather((0..size).map(|i| async move { i }))
                    .await
                    .expect("gather");
                sum += v.iter().sum::<u64>();
            }
            sum
        }),
        Rt::TokioLocal => time_tokio_local(expect, async move {
            let mut sum = 0;
            for _ in 0..rounds {
                let hs: Vec<_> = (0..size).map(|i| tokio::task::spawn_local(async move { i })).collect();
                let mut v = Vec::with_capacity(hs.len());
                for h in hs {
                    v.push(h.await.expect("task"));
                }
                sum += v.iter().sum::<u64>();
            }
            sum
        }),
        Rt::TokioSpawn => time_tokio_spawn(expect, async move {
            let mut sum = 0;
            for _ in 0..rounds {
                let hs: Vec<_> = (0..size).map(|i| tokio::spawn(async move { i })).collect();
                let mut v = Vec::with_capacity(hs.len());
                for h in hs {
                    v.push(h.await.expect("task"));
                }
                sum += v.iter().sum::<u64>();
            }
            sum
        }),
    }
}

const SLEEP: Duration = Duration::from_millis(1);

/// Lateness of `t1` for a 1 ms sleep requested at `t0`, in seconds (signed).
fn lateness(t0: Instant, t1: Instant) -> f64 {
    let deadline = t0 + SLEEP;
    if t1 >= deadline {
        (t1 - deadline).as_secs_f64()
    } else {
        -(deadline - t1).as_secs_f64()
    }
}

/// Wall time of `size.ops()` sequential 1 ms sleeps; records each one's
/// lateness.
fn sleep_lateness(rt: Rt, size: Size) -> Sample {
    let n = size.ops();
    let out = Rc::new(RefCell::new(Vec::with_capacity(n as usize)));
    let o = out.clone();
    let r = match rt {
        Rt::Uring | Rt::Fallback => time_ringloop(rt, n, async move {
            for _ in 0..n {
                let t0 = Instant::now();
                ringloop::sleep(SLEEP).await;
                o.borrow_mut().push(lateness(t0, Instant::now()));
            }
            n
        }),
        Rt::TokioLocal => time_tokio_local(n, async move {
            for _ in 0..n {
                let t0 = Instant::now();
                tokio::time::sleep(SLEEP).await;
                o.borrow_mut().push(lateness(t0, Instant::now()));
            }
            n
        }),
        Rt::TokioSpawn => not_run(rt),
    };
    record_latencies(out.take());
    r
}

/// Pause of the remote thread between wake-ups, so the loop is parked.
const XLAT_PAUSE: Duration = Duration::from_micros(200);

/// Sum of `size.ops()` cross-thread wake latencies (the pauses between them
/// are not counted); records each one.
fn xthread_latency(rt: Rt, size: Size) -> Sample {
    let n = size.ops();
    let lat: Vec<Duration> = match rt {
        Rt::Uring | Rt::Fallback => {
            let lp = ringloop_loop(rt)?;
            let h = lp.handle();
            let remote = std::thread::spawn(move || {
                let (tx, rx) = mpsc::channel::<Duration>();
                let mut lat = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    std::thread::sleep(XLAT_PAUSE);
                    let tx = tx.clone();
                    let t0 = Instant::now();
                    h.call_soon_threadsafe(move || {
                        let _ = tx.send(t0.elapsed());
                    })
                    .expect("call_soon_threadsafe");
                    lat.push(rx.recv().expect("reply"));
                }
                h.stop().expect("stop");
                lat
            });
            lp.run_forever().map_err(|e| e.to_string())?;
            remote.join().map_err(|_| "remote thread panicked".to_string())?
        }
        Rt::TokioSpawn => {
            let rt = tokio_rt();
            let h = rt.handle().clone();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let remote = std::thread::spawn(move || {
                let (tx, rx) = mpsc::channel::<Duration>();
                let mut lat = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    std::thread::sleep(XLAT_PAUSE);
                    let tx = tx.clone();
                    let t0 = Instant::now();
                    drop(h.spawn(async move {
                        let _ = tx.send(t0.elapsed());
                    }));
                    lat.push(rx.recv().expect("reply"));
                }
                let _ = done_tx.send(());
                lat
            });
            rt.block_on(async move { done_rx.await.expect("done") });
            remote.join().map_err(|_| "remote thread panicked".to_string())?
        }
        Rt::TokioLocal => return not_run(rt),
    };
    check(lat.len() as u64, n)?;
    let total = lat.iter().sum();
    record_latencies(lat.iter().map(Duration::as_secs_f64).collect());
    Ok(total)
}

// ----------------------------------------------------------------- driver

/// How this process was started (criterion parses the same arguments).
struct Mode {
    /// `cargo test`: criterion's test mode (no `--bench`, or `--test`), one
    /// iteration per function at the tiny smoke size.
    smoke: bool,
    /// Criterion's `--quick`.
    quick: bool,
}

impl Mode {
    fn from_args() -> Mode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let has = |flag: &str| args.iter().any(|a| a == flag);
        Mode {
            smoke: !has("--bench") || has("--test"),
            quick: has("--quick"),
        }
    }

    fn name(&self) -> &'static str {
        if self.smoke {
            "smoke-test"
        } else if self.quick {
            "quick"
        } else {
            "full"
        }
    }
}

/// One call of a workload by criterion.
struct Call {
    iters: u64,
    time: Duration,
    /// Per-sample latencies in seconds ([`Kind::Latency`] only).
    lat: Vec<f64>,
}

enum Outcome {
    /// The runtime cannot be built here.
    Skipped(String),
    /// Criterion's calls, in order (none if its filter excluded the function).
    Ran(Vec<Call>),
}

struct Row {
    bench: &'static Bench,
    rt: Rt,
    per_iter: u64,
    outcome: Outcome,
}

impl Row {
    /// The calls criterion measured: all but the warm-up, which in a full run
    /// precedes the last `sample_size` calls (`--quick` and the smoke run
    /// have no warm-up).
    fn measured(&self, mode: &Mode) -> &[Call] {
        let Outcome::Ran(calls) = &self.outcome else {
            return &[];
        };
        if mode.smoke || mode.quick {
            calls
        } else {
            &calls[calls.len().saturating_sub(self.bench.timing.samples)..]
        }
    }
}

fn configure(g: &mut BenchmarkGroup<'_, WallTime>, b: &Bench, mode: &Mode, per_iter: u64) {
    g.warm_up_time(b.timing.warm_up)
        .measurement_time(b.timing.measure)
        .sample_size(b.timing.samples)
        .throughput(Throughput::Elements(per_iter));
    if b.timing.flat {
        g.sampling_mode(SamplingMode::Flat);
    }
    if mode.quick && b.kind == Kind::Latency {
        // `--quick` stops once two consecutive samples agree within the
        // significance level, after as little as 100 ms: too few latency
        // samples for a p99. Never agree; run until the cap.
        g.measurement_time(QUICK_LATENCY_CAP).significance_level(1e-9);
    }
}

fn main() {
    let mode = Mode::from_args();
    let started = SystemTime::now();
    let t_start = Instant::now();
    let header = header_lines(&mode);
    println!("{}\n", header.join("\n"));

    let unavailable: Vec<(Rt, String)> = [Rt::Uring, Rt::Fallback]
        .into_iter()
        .filter_map(|rt| ringloop_loop(rt).err().map(|e| (rt, e)))
        .collect();

    let mut c = Criterion::default().configure_from_args();
    let mut rows = Vec::new();
    for b in BENCHES {
        let per_iter = if mode.smoke { b.smoke_per_iter } else { b.per_iter };
        let mut g = c.benchmark_group(b.group);
        configure(&mut g, b, &mode, per_iter);
        for &rt in b.runtimes {
            if let Some((_, why)) = unavailable.iter().find(|(r, _)| *r == rt) {
                println!("{}/{}: skipped, {why}", b.group, rt.id());
                rows.push(Row {
                    bench: b,
                    rt,
                    per_iter,
                    outcome: Outcome::Skipped(why.clone()),
                });
                continue;
            }
            let calls = RefCell::new(Vec::new());
            g.bench_function(rt.id(), |bencher| {
                bencher.iter_custom(|iters| {
                    let r = (b.run)(rt, Size { iters, per_iter });
                    let lat = take_latencies();
                    match r {
                        Ok(time) => {
                            calls.borrow_mut().push(Call { iters, time, lat });
                            time
                        }
                        // A wrong result (or a failing runtime) fails the
                        // run, `cargo test` included.
                        Err(e) => panic!("{}/{}: {e}", b.group, rt.id()),
                    }
                })
            });
            rows.push(Row {
                bench: b,
                rt,
                per_iter,
                outcome: Outcome::Ran(calls.into_inner()),
            });
        }
        g.finish();
    }
    c.final_summary();

    if rows.iter().all(|r| r.measured(&mode).is_empty()) {
        // `--list`, or a filter that matched nothing.
        return;
    }
    let md = summary(&rows, &mode, started, &header, t_start.elapsed());
    println!("\n{md}");
    let dir = target_dir().join("ringloop-bench");
    let file = dir.join(if mode.smoke { "runtime-smoke.md" } else { "runtime.md" });
    match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, &md)) {
        Ok(()) => println!("wrote {}", file.display()),
        Err(e) => println!("could not write {}: {e}", file.display()),
    }
}

fn header_lines(mode: &Mode) -> Vec<String> {
    let mut h = vec![
        format!(
            "# ringloop runtime micro-benchmarks (criterion, {} mode)\n",
            mode.name()
        ),
        format!(
            "- CPUs this process may run on: {} (pin with `taskset -c 1` for stable numbers)",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        format!(
            "- `Instant::now()` here: {:.1} ns (vDSO clock_gettime; on some VMs it is a large share of a loop iteration)",
            clock_read_ns()
        ),
    ];
    for rt in [Rt::Uring, Rt::Fallback] {
        match ringloop_loop(rt) {
            Ok(lp) => h.push(format!("- {}: {}", rt.id(), lp.driver_description())),
            Err(e) => h.push(format!("- {}: {e}", rt.id())),
        }
    }
    h.push("- tokio: current_thread with `enable_time()` only (the workloads do no I/O)".into());
    h
}

/// Mean cost of one `Instant::now()` over a short burst.
fn clock_read_ns() -> f64 {
    const N: u32 = 200_000;
    let t0 = Instant::now();
    for _ in 0..N {
        black_box(Instant::now());
    }
    t0.elapsed().as_secs_f64() * 1e9 / f64::from(N)
}

/// `$CARGO_TARGET_DIR`, else this package's `target/`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Where criterion saves its results (its own rule, minus the `cargo
/// metadata` call it makes when `CARGO_TARGET_DIR` is unset).
fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("criterion"))
}

/// A time per criterion iteration, in ns.
struct Estimate {
    point: f64,
    /// 95% confidence interval, if criterion's.
    ci: Option<(f64, f64)>,
    /// Which statistic.
    from: &'static str,
}

/// The text right after `"key":` in a JSON document.
fn json_after<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    json.find(&pat).map(|i| json[i + pat.len()..].trim_start())
}

/// The number right after `"key":`.
fn json_number(json: &str, key: &str) -> Option<f64> {
    let rest = json_after(json, key)?;
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// Criterion's typical estimate (slope if it sampled linearly, else mean)
/// from `estimates.json` written by this run.
fn criterion_estimate(group: &str, function: &str, started: SystemTime) -> Option<Estimate> {
    let path = criterion_dir()
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let fresh = std::fs::metadata(&path).and_then(|m| m.modified()).ok()? >= started;
    if !fresh {
        return None;
    }
    let json = std::fs::read_to_string(&path).ok()?;
    let (obj, from) = match json_after(&json, "slope") {
        Some(s) if !s.starts_with("null") => (s, "criterion slope"),
        _ => (json_after(&json, "mean")?, "criterion mean"),
    };
    Some(Estimate {
        point: json_number(obj, "point_estimate")?,
        ci: Some((json_number(obj, "lower_bound")?, json_number(obj, "upper_bound")?)),
        from,
    })
}

/// This harness's own figure: total time over total iterations of the
/// measured calls.
fn own_estimate(calls: &[Call], smoke: bool) -> Option<Estimate> {
    let iters: u64 = calls.iter().map(|c| c.iters).sum();
    let time: Duration = calls.iter().map(|c| c.time).sum();
    (iters > 0).then(|| Estimate {
        point: time.as_secs_f64() * 1e9 / iters as f64,
        ci: None,
        from: if smoke {
            "own (1 call)"
        } else {
            "own (no criterion file)"
        },
    })
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn fmt_rate(ns_per_op: f64) -> String {
    let per_s = 1e9 / ns_per_op;
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else {
        format!("{:.1} k/s", per_s / 1e3)
    }
}

/// A latency (seconds, possibly negative) in µs.
fn fmt_lat(secs: f64) -> String {
    format!("{:.1} µs", secs * 1e6)
}

/// `q`-quantile of sorted samples (nearest rank); NaN if empty.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Distribution of one runtime's latency samples (seconds).
#[derive(Clone, Copy)]
struct LatencyStats {
    n: usize,
    p50: f64,
    p99: f64,
    mean: f64,
    max: f64,
}

/// The ratio column: `value / baseline`.
fn ratio(row: &Row, value: f64, baseline: Option<f64>) -> String {
    match (row.bench.baseline, baseline) {
        (None, _) => "n/a (no tokio analogue)".into(),
        (Some(b), _) if b == row.rt => "1 (baseline)".into(),
        (Some(_), None) => "n/a (baseline not run)".into(),
        (Some(_), Some(base)) if row.rt.is_ringloop() => format!("**{:.2}**", value / base),
        (Some(_), Some(base)) => format!("{:.2} (tokio vs tokio)", value / base),
    }
}

fn summary(rows: &[Row], mode: &Mode, started: SystemTime, header: &[String], took: Duration) -> String {
    let mut out = header.to_vec();
    out.push(format!("- this run: {:.0} s\n", took.as_secs_f64()));
    if mode.smoke {
        out.push("Smoke run: one tiny iteration per function, figures meaningless.\n".into());
    }
    out.push("| benchmark | runtime | time/op | 95% CI | ops/s | vs tokio-ct (<1 = ringloop faster) | from |".into());
    out.push("|---|---|---|---|---|---|---|".into());

    // Per-op estimate of every row that ran (None for skipped / filtered).
    let per_op: Vec<Option<(Estimate, f64)>> = rows
        .iter()
        .map(|r| {
            let calls = r.measured(mode);
            if calls.is_empty() {
                return None;
            }
            let est = (!mode.smoke)
                .then(|| criterion_estimate(r.bench.group, r.rt.id(), started))
                .flatten()
                .or_else(|| own_estimate(calls, mode.smoke))?;
            let op = est.point / r.per_iter as f64;
            Some((est, op))
        })
        .collect();
    let baseline_of = |r: &Row, pick: &dyn Fn(usize) -> Option<f64>| -> Option<f64> {
        let b = r.bench.baseline?;
        rows.iter()
            .position(|o| std::ptr::eq(o.bench, r.bench) && o.rt == b)
            .and_then(pick)
    };
    let mut shown_groups: Vec<&str> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let group_ran = rows
            .iter()
            .any(|o| std::ptr::eq(o.bench, r.bench) && !o.measured(mode).is_empty());
        if !group_ran {
            continue;
        }
        if !shown_groups.contains(&r.bench.group) {
            shown_groups.push(r.bench.group);
        }
        let name = format!("{} (per {})", r.bench.group, r.bench.op);
        match (&r.outcome, &per_op[i]) {
            (Outcome::Skipped(why), _) => {
                out.push(format!("| {name} | {} | – | – | – | skipped: {why} | |", r.rt.id()));
            }
            (Outcome::Ran(_), None) => {} // filtered out
            (Outcome::Ran(_), Some((est, op))) => {
                let base = baseline_of(r, &|j| per_op[j].as_ref().map(|p| p.1));
                let ci = est.ci.map_or("–".into(), |(lo, hi)| {
                    format!("{}–{}", fmt_ns(lo / r.per_iter as f64), fmt_ns(hi / r.per_iter as f64))
                });
                out.push(format!(
                    "| {name} | {} | {} | {ci} | {} | {} | {} |",
                    r.rt.id(),
                    fmt_ns(*op),
                    fmt_rate(*op),
                    ratio(r, *op, base),
                    est.from,
                ));
            }
        }
    }

    // Latency distributions.
    let pcts: Vec<Option<LatencyStats>> = rows
        .iter()
        .map(|r| {
            if r.bench.kind != Kind::Latency {
                return None;
            }
            let mut lat: Vec<f64> = r.measured(mode).iter().flat_map(|c| c.lat.iter().copied()).collect();
            if lat.is_empty() {
                return None;
            }
            lat.sort_by(f64::total_cmp);
            Some(LatencyStats {
                n: lat.len(),
                p50: percentile(&lat, 0.50),
                p99: percentile(&lat, 0.99),
                mean: lat.iter().sum::<f64>() / lat.len() as f64,
                max: lat[lat.len() - 1],
            })
        })
        .collect();
    if pcts.iter().any(Option::is_some) {
        out.push(String::new());
        out.push(
            "Latency (every sample of the calls criterion measured; lateness for `sleep_1ms_lateness`, \
             wake latency for `xthread_wake_latency`):\n"
                .into(),
        );
        out.push(
            "| benchmark | runtime | samples | p50 | p99 | p50 vs tokio-ct | p99 vs tokio-ct | mean | max |".into(),
        );
        out.push("|---|---|---|---|---|---|---|---|---|".into());
        for (i, r) in rows.iter().enumerate() {
            if r.bench.kind != Kind::Latency {
                continue;
            }
            match (&r.outcome, pcts[i]) {
                (Outcome::Skipped(why), _) => out.push(format!(
                    "| {} | {} | – | – | – | skipped: {why} | | | |",
                    r.bench.group,
                    r.rt.id()
                )),
                (Outcome::Ran(_), None) => {}
                (Outcome::Ran(_), Some(l)) => {
                    let b50 = baseline_of(r, &|j| pcts[j].map(|p| p.p50));
                    let b99 = baseline_of(r, &|j| pcts[j].map(|p| p.p99));
                    out.push(format!(
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        r.bench.group,
                        r.rt.id(),
                        l.n,
                        fmt_lat(l.p50),
                        fmt_lat(l.p99),
                        ratio(r, l.p50, b50),
                        ratio(r, l.p99, b99),
                        fmt_lat(l.mean),
                        fmt_lat(l.max),
                    ));
                }
            }
        }
    }

    out.push(String::new());
    out.push(
        "time/op: criterion's typical estimate per iteration (slope under linear sampling, else mean) \
         divided by the operations per iteration; each runtime runs in its own criterion function, \
         one after the other."
            .into(),
    );
    out.push(String::new());
    for b in BENCHES.iter().filter(|b| shown_groups.contains(&b.group)) {
        let per_iter = rows
            .iter()
            .find(|r| std::ptr::eq(r.bench, b))
            .map_or(b.per_iter, |r| r.per_iter);
        out.push(format!(
            "- `{}` ({per_iter} {}(s) per iteration): {}",
            b.group, b.op, b.note
        ));
    }
    out.join("\n")
}
