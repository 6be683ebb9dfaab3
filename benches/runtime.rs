//! Runtime micro-benchmarks: ringloop (io_uring and fallback backends) vs
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
//! # Layout
//!
//! This file holds the driver (`main`: criterion groups, the summary file);
//! `runtime/harness.rs` the runtimes, sizes and timings, `runtime/table.rs`
//! the benchmark table, `runtime/runners.rs` the per-call loop / runtime
//! setup, `runtime/workloads.rs` one function per group and
//! `runtime/report.rs` the Markdown summary.
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

#[path = "runtime/harness.rs"]
mod harness;
#[path = "runtime/report.rs"]
mod report;
#[path = "runtime/runners.rs"]
mod runners;
#[path = "runtime/table.rs"]
mod table;
#[path = "runtime/workloads.rs"]
mod workloads;

use harness::*;
use report::*;
use runners::*;
use table::*;
use workloads::*;

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
