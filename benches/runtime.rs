//! Runtime micro-benchmarks: ringloop (io_uring and readiness backends) vs
//! tokio `current_thread`.
//!
//! Self-contained (no criterion) to keep compile times low. Each benchmark
//! runs one warm-up round and then several measured rounds; within a round
//! the runtimes run back to back (A B C A B C ...), so a ratio is computed
//! per round from neighbouring samples and the table reports the median of
//! those per-round ratios.
//!
//! ```text
//! cargo bench --bench runtime                      # full run
//! cargo bench --bench runtime -- --quick           # sizes / 10, a few seconds
//! cargo bench --bench runtime -- spawn             # filter on "bench/runtime"
//! cargo bench --bench runtime -- --rounds 9 --warmup 2 yield
//! taskset -c 1 target/release/deps/runtime-<hash> --bench   # pinned by hand
//! ```
//!
//! Without `--bench` (i.e. under `cargo test --benches`) every benchmark runs
//! once at a tiny size as a smoke test.

use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::mpsc;
use std::task::Poll;
use std::time::{Duration, Instant};

use ringloop::{DriverChoice, EventLoop};

/// The runtimes a benchmark can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rt {
    /// ringloop, `DriverChoice::Uring`.
    Uring,
    /// ringloop, `DriverChoice::Fallback` (epoll via `polling`).
    Fallback,
    /// tokio current_thread (time enabled) + `LocalSet`, tasks via `spawn_local`.
    TokioLocal,
    /// tokio current_thread (time enabled), tasks via `tokio::spawn`.
    TokioSpawn,
}

impl Rt {
    fn label(self) -> &'static str {
        match self {
            Rt::Uring => "ringloop/uring",
            Rt::Fallback => "ringloop/fallback",
            Rt::TokioLocal => "tokio-ct LocalSet",
            Rt::TokioSpawn => "tokio-ct spawn",
        }
    }
}

/// Result of one sample: wall time of the measured region, or why the
/// runtime is unavailable.
type Sample = Result<Duration, String>;

struct Bench {
    name: &'static str,
    /// Operations per sample at full size (for ns/op).
    ops: u64,
    runtimes: &'static [Rt],
    /// The tokio runtime the ratio column divides by.
    baseline: Option<Rt>,
    /// What exactly is measured (printed under the table).
    note: &'static str,
    run: fn(Rt, u64) -> Sample,
    /// Throughput (wall time per sample) or latency (a distribution the run
    /// records with [`record_latencies`]).
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Throughput,
    Latency,
}

thread_local! {
    /// Latency samples (seconds, may be negative) of the last run of a
    /// [`Kind::Latency`] benchmark; drained by the driver after each run.
    static LATENCIES: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Hands one run's latency samples to the driver.
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

const BENCHES: &[Bench] = &[
    Bench {
        name: "spawn_join_100k",
        ops: 100_000,
        runtimes: ALL,
        baseline: Some(Rt::TokioLocal),
        note: "spawn N tasks returning their index, then await every handle in order and sum. \
               ringloop: `ringloop::spawn` inside `run_until_complete`; tokio-ct LocalSet: \
               `task::spawn_local` (the analogue: ringloop tasks are !Send); tokio-ct spawn: \
               `tokio::spawn` on the same runtime, for reference. In every runtime the driving \
               future is itself a spawned task.",
        run: spawn_join,
        kind: Kind::Throughput,
    },
    Bench {
        name: "call_soon_1m_batch",
        ops: 1_000_000,
        runtimes: RINGLOOP_ONLY,
        baseline: None,
        note: "one task schedules N `lp.call_soon` callbacks (each captures an `Rc<Cell>` counter \
               and increments it), then yields once; all N run in the next iteration. tokio has no \
               callback queue; spawning N tiny tasks would measure task creation, not callbacks, \
               so no tokio row.",
        run: call_soon_batch,
        kind: Kind::Throughput,
    },
    Bench {
        name: "call_soon_1m_chain",
        ops: 1_000_000,
        runtimes: RINGLOOP_ONLY,
        baseline: None,
        note: "N callbacks in a chain: each one `call_soon`s the next, so every callback costs one \
               full loop iteration (`_run_once`, including its zero-timeout driver poll). \
               No tokio analogue.",
        run: call_soon_chain,
        kind: Kind::Throughput,
    },
    Bench {
        name: "yield_1m",
        ops: 1_000_000,
        runtimes: ALL,
        baseline: Some(Rt::TokioLocal),
        note: "one task doing N `yield_now().await` (ringloop: `ringloop::yield_now`, one loop \
               iteration each; tokio: `tokio::task::yield_now`, which defers the wake until after \
               a zero-timeout park of the driver).",
        run: yield_one,
        kind: Kind::Throughput,
    },
    Bench {
        name: "yield_1m_100tasks",
        ops: 1_000_000,
        runtimes: ALL,
        baseline: Some(Rt::TokioLocal),
        note: "100 tasks each doing N/100 `yield_now().await` (wake-ups through the ready queue, \
               per-iteration overhead amortised over 100 tasks).",
        run: yield_many,
        kind: Kind::Throughput,
    },
    Bench {
        name: "timers_1m_90pct_cancel",
        ops: 1_000_000,
        runtimes: LOCAL,
        baseline: Some(Rt::TokioLocal),
        note: "create N sleep futures (1-2 ms, scrambled deadlines) and poll each once so it \
               registers its timer; drop 90% (cancel); await the remaining 10% (already due by \
               then). ringloop: `ringloop::sleep` (binary heap + slab); tokio: \
               `tokio::time::sleep` (hierarchical wheel).",
        run: timers,
        kind: Kind::Throughput,
    },
    Bench {
        name: "xthread_wake_20k",
        ops: 20_000,
        runtimes: XTHREAD,
        baseline: Some(Rt::TokioSpawn),
        note: "another thread does N sequential round trips to a sleeping loop: ringloop \
               `LoopHandle::call_soon_threadsafe(closure)` vs tokio `Handle::spawn(async block)` \
               (a full task, the closest tokio API); the loop side answers on a std mpsc channel \
               the remote thread blocks on. Timed on the remote thread. Under `taskset -c 1` both \
               threads share one core, so this includes two context switches per round trip.",
        run: xthread,
        kind: Kind::Throughput,
    },
    Bench {
        name: "lock_pingpong_100k",
        ops: 100_000,
        runtimes: LOCAL,
        baseline: Some(Rt::TokioLocal),
        note: "two tasks A and B each loop N/2 times: `let g = lock.lock().await; <check the previous \
               holder was the other task; record self>; drop(g)`. The driving task takes the lock \
               first, spawns A then B, yields until both are queued on it, then releases: from then \
               on every release hands the lock to the queued peer (FIFO, no barging, in both \
               `ringloop::sync::Lock` and `tokio::sync::Mutex`) and the releaser's next `lock()` \
               queues behind it, so holders strictly alternate (checked; a violation fails the run). \
               N = total acquisitions; each is one handoff + one task switch.",
        run: lock_pingpong,
        kind: Kind::Throughput,
    },
    Bench {
        name: "queue_pingpong_100k",
        ops: 100_000,
        runtimes: LOCAL,
        baseline: Some(Rt::TokioLocal),
        note: "N round trips of a token between two tasks over two bounded queues of capacity 1: \
               ping does `q1.put(i); q2.get()`, pong does `q1.get(); q2.put(x + 1)` (results summed \
               and checked). ringloop: `ringloop::sync::Queue::new(1)` (one queue object serves both \
               ends); tokio: two `tokio::sync::mpsc::channel(1)` (Sender/Receiver).",
        run: queue_pingpong,
        kind: Kind::Throughput,
    },
    Bench {
        name: "gather_10k",
        ops: 100_000,
        runtimes: ALL,
        baseline: Some(Rt::TokioLocal),
        note: "N/10k rounds (one round of min(N, 10k) in quick/smoke) of: run 10 000 tiny futures \
               (`async move { i }`) concurrently and collect their outputs in order into a Vec, then \
               sum. ringloop: `ringloop::gather(futs).await` (spawns each as a task plus one gather \
               task that collects results). tokio has no gather; the closest is spawning each \
               (`spawn_local` / `tokio::spawn`) and awaiting the JoinHandles in order into a Vec: \
               same task count, no extra collector task. ns/op is per future.",
        run: gather_bench,
        kind: Kind::Throughput,
    },
    Bench {
        name: "sleep_1ms_lateness",
        ops: 1_000,
        runtimes: LOCAL,
        baseline: Some(Rt::TokioLocal),
        note: "one task does N sequential `sleep(1ms).await` (nothing else runs); lateness = \
               `Instant::now()` after the await − (`Instant::now()` just before creating the sleep \
               + 1 ms). Negative means woken early (a runtime measuring the deadline from a cached \
               loop time). tokio's timer wheel has 1 ms resolution and rounds deadlines up; \
               ringloop uses the exact deadline (io_uring timeout / epoll_wait timeout).",
        run: sleep_lateness,
        kind: Kind::Latency,
    },
    Bench {
        name: "xthread_wake_latency",
        ops: 5_000,
        runtimes: XTHREAD,
        baseline: Some(Rt::TokioSpawn),
        note: "another thread sends N one-way wake-ups to a loop that is parked: it takes `t0 = \
               Instant::now()`, calls ringloop `LoopHandle::call_soon_threadsafe(closure)` / tokio \
               `Handle::spawn(async block)`, and the closure/task measures `t0.elapsed()` on the \
               loop thread and sends it back over a std mpsc channel. After each reply the remote \
               thread sleeps 200 µs so the loop is back in its blocking wait when the next wake \
               comes. Under `taskset -c 1` both threads share one core, so this includes the \
               wake-up's context switch.",
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

// ------------------------------------------------------------- benchmarks

fn spawn_join(rt: Rt, n: u64) -> Sample {
    let expect = n * (n - 1) / 2;
    match rt {
        Rt::Uring | Rt::Fallback => time_ringloop(rt, expect, async move {
            let handles: Vec<_> = (0..n).map(|i| ringloop::spawn(async move { i })).collect();
            let mut sum = 0;
            for h in handles {
                sum += h.await.expect("task");
            }
            sum
        }),
        Rt::TokioLocal => time_tokio_local(expect, async move {
            let handles: Vec<_> = (0..n).map(|i| tokio::task::spawn_local(async move { i })).collect();
            let mut sum = 0;
            for h in handles {
                sum += h.await.expect("task");
            }
            sum
        }),
        Rt::TokioSpawn => time_tokio_spawn(expect, async move {
            let handles: Vec<_> = (0..n).map(|i| tokio::spawn(async move { i })).collect();
            let mut sum = 0;
            for h in handles {
                sum += h.await.expect("task");
            }
            sum
        }),
    }
}

fn call_soon_batch(rt: Rt, n: u64) -> Sample {
    time_ringloop(rt, n, async move {
        let lp = ringloop::current().expect("running loop");
        let counter = Rc::new(Cell::new(0u64));
        for _ in 0..n {
            let c = counter.clone();
            lp.call_soon(move || c.set(c.get() + 1)).expect("call_soon");
        }
        // Our own wake-up is queued after the N callbacks: FIFO.
        ringloop::yield_now().await;
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

fn call_soon_chain(rt: Rt, n: u64) -> Sample {
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

fn yield_one(rt: Rt, n: u64) -> Sample {
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

const YIELD_TASKS: u64 = 100;

fn yield_many(rt: Rt, n: u64) -> Sample {
    let per = n / YIELD_TASKS;
    let expect = per * YIELD_TASKS;
    match rt {
        Rt::Uring | Rt::Fallback => time_ringloop(rt, expect, async move {
            let hs: Vec<_> = (0..YIELD_TASKS)
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
            let hs: Vec<_> = (0..YIELD_TASKS)
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
            let hs: Vec<_> = (0..YIELD_TASKS)
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

fn timers(rt: Rt, n: u64) -> Sample {
    let expect = n.div_ceil(10);
    match rt {
        Rt::Uring | Rt::Fallback => time_ringloop(rt, expect, async move {
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
            let mut fired = 0;
            for s in v.iter_mut().filter_map(Option::as_mut) {
                s.await;
                fired += 1;
            }
            fired
        }),
        Rt::TokioLocal => time_tokio_local(expect, async move {
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
            let mut fired = 0;
            for s in v.iter_mut().filter_map(Option::as_mut) {
                // SAFETY: as above, the sleep stays in place in `v`.
                unsafe { Pin::new_unchecked(s) }.await;
                fired += 1;
            }
            fired
        }),
        Rt::TokioSpawn => Err("not run".into()),
    }
}

fn xthread(rt: Rt, n: u64) -> Sample {
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
        Rt::TokioLocal => Err("not run".into()),
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

fn lock_pingpong(rt: Rt, n: u64) -> Sample {
    let per = (n / 2).max(1);
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
        Rt::TokioSpawn => Err("not run".into()),
    }
}

fn queue_pingpong(rt: Rt, n: u64) -> Sample {
    // Sum of (i + 1) for i in 0..n.
    let expect = n * (n + 1) / 2;
    match rt {
        Rt::Uring | Rt::Fallback => time_ringloop(rt, expect, async move {
            let q1 = ringloop::sync::Queue::<u64>::new(1);
            let q2 = ringloop::sync::Queue::<u64>::new(1);
            let (p1, p2) = (q1.clone(), q2.clone());
            let pong = ringloop::spawn(async move {
                for _ in 0..n {
                    let x = p1.get().await;
                    p2.put(x + 1).await;
                }
            });
            let mut sum = 0;
            for i in 0..n {
                q1.put(i).await;
                sum += q2.get().await;
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
        Rt::TokioSpawn => Err("not run".into()),
    }
}

const GATHER_SIZE: u64 = 10_000;

fn gather_bench(rt: Rt, n: u64) -> Sample {
    let size = n.min(GATHER_SIZE);
    let rounds = (n / size).max(1);
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

fn sleep_lateness(rt: Rt, n: u64) -> Sample {
    let out = Rc::new(std::cell::RefCell::new(Vec::with_capacity(n as usize)));
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
        Rt::TokioSpawn => Err("not run".into()),
    };
    record_latencies(out.take());
    r
}

/// Pause of the remote thread between wake-ups, so the loop is parked.
const XLAT_PAUSE: Duration = Duration::from_micros(200);

fn xthread_latency(rt: Rt, n: u64) -> Sample {
    let (lat, dt) = match rt {
        Rt::Uring | Rt::Fallback => {
            let lp = ringloop_loop(rt)?;
            let h = lp.handle();
            let remote = std::thread::spawn(move || {
                let (tx, rx) = mpsc::channel::<Duration>();
                let mut lat = Vec::with_capacity(n as usize);
                let t_start = Instant::now();
                for _ in 0..n {
                    std::thread::sleep(XLAT_PAUSE);
                    let tx = tx.clone();
                    let t0 = Instant::now();
                    h.call_soon_threadsafe(move || {
                        let _ = tx.send(t0.elapsed());
                    })
                    .expect("call_soon_threadsafe");
                    lat.push(rx.recv().expect("reply").as_secs_f64());
                }
                let dt = t_start.elapsed();
                h.stop().expect("stop");
                (lat, dt)
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
                let t_start = Instant::now();
                for _ in 0..n {
                    std::thread::sleep(XLAT_PAUSE);
                    let tx = tx.clone();
                    let t0 = Instant::now();
                    drop(h.spawn(async move {
                        let _ = tx.send(t0.elapsed());
                    }));
                    lat.push(rx.recv().expect("reply").as_secs_f64());
                }
                let dt = t_start.elapsed();
                let _ = done_tx.send(());
                (lat, dt)
            });
            rt.block_on(async move { done_rx.await.expect("done") });
            remote.join().map_err(|_| "remote thread panicked".to_string())?
        }
        Rt::TokioLocal => return Err("not run".into()),
    };
    record_latencies(lat);
    Ok(dt)
}

// ----------------------------------------------------------------- driver

struct Opts {
    bench_mode: bool,
    quick: bool,
    rounds: usize,
    warmup: usize,
    filter: Option<String>,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        bench_mode: false,
        quick: false,
        rounds: 0,
        warmup: 1,
        filter: None,
    };
    let mut rounds = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => o.bench_mode = true,
            "--quick" => o.quick = true,
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()),
            "--warmup" => o.warmup = args.next().and_then(|v| v.parse().ok()).unwrap_or(1),
            "-h" | "--help" => {
                println!(
                    "usage: runtime [--bench] [--quick] [--rounds N] [--warmup N] [FILTER]\n\
                     FILTER is a substring of \"benchmark/runtime\", e.g. `spawn` or `yield_1m/ringloop`."
                );
                std::process::exit(0);
            }
            s if s.starts_with('-') => eprintln!("ignoring unknown option {s}"),
            s => o.filter = Some(s.to_owned()),
        }
    }
    if !o.bench_mode {
        // `cargo test --benches`: one tiny smoke run of everything.
        o.rounds = rounds.unwrap_or(1);
        o.warmup = 0;
    } else {
        o.rounds = rounds.unwrap_or(if o.quick { 5 } else { 7 }).max(1);
    }
    o
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// `q`-quantile of sorted samples (nearest rank); NaN if empty.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A latency (seconds, possibly negative) in µs.
fn fmt_lat(secs: f64) -> String {
    format!("{:.1} µs", secs * 1e6)
}

fn fmt_time(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.1} µs", secs * 1e6)
    }
}

fn fmt_per_op(secs: f64, ops: u64) -> String {
    let ns = secs * 1e9 / ops as f64;
    if ns >= 1000.0 {
        format!("{:.2} µs/op", ns / 1000.0)
    } else {
        format!("{ns:.1} ns/op")
    }
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

fn main() {
    let opts = parse_args();
    let divisor = if !opts.bench_mode {
        1000
    } else if opts.quick {
        10
    } else {
        1
    };

    println!(
        "# ringloop runtime benchmarks ({} mode: {} warm-up + {} measured round(s), sizes / {divisor})\n",
        if !opts.bench_mode {
            "smoke-test"
        } else if opts.quick {
            "quick"
        } else {
            "full"
        },
        opts.warmup,
        opts.rounds,
    );
    println!(
        "- CPUs this process may run on: {} (pin with `taskset -c 1` for stable numbers)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "- `Instant::now()` here: {:.1} ns (vDSO clock_gettime; on some VMs it is a large share of a loop iteration)",
        clock_read_ns()
    );
    for rt in [Rt::Uring, Rt::Fallback] {
        match ringloop_loop(rt) {
            Ok(lp) => println!("- {}: {}", rt.label(), lp.driver_description()),
            Err(e) => println!("- {}: {e}", rt.label()),
        }
    }
    println!("- tokio: current_thread, `enable_time()` (no I/O driver: the dev-dependency has no `net` feature)\n");

    let mut table = vec![
        "| benchmark | runtime | median | min–max | ratio vs tokio (median of per-round ratios; <1 = ringloop faster) |"
            .to_string(),
        "|---|---|---|---|---|".to_string(),
    ];
    let mut lat_table = vec![
        "| benchmark | runtime | p50 (median over rounds) | p50 min–max | p99 (median over rounds) | p50 ratio vs tokio (median of per-round ratios; <1 = ringloop lower) |"
            .to_string(),
        "|---|---|---|---|---|---|".to_string(),
    ];
    let mut notes = Vec::new();
    let mut failed = false;

    for b in BENCHES {
        let selected: Vec<Rt> = b
            .runtimes
            .iter()
            .copied()
            .filter(|rt| {
                opts.filter
                    .as_deref()
                    .is_none_or(|f| format!("{}/{}", b.name, rt.label()).contains(f))
            })
            .collect();
        if selected.is_empty() {
            continue;
        }
        let n = (b.ops / divisor).max(1);
        eprintln!("running {} (n = {n}) on {} runtime(s)", b.name, selected.len());

        let mut unavailable: Vec<Option<String>> = vec![None; selected.len()];
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); selected.len()];
        let mut p50s: Vec<Vec<f64>> = vec![Vec::new(); selected.len()];
        let mut p99s: Vec<Vec<f64>> = vec![Vec::new(); selected.len()];
        for round in 0..opts.warmup + opts.rounds {
            for (i, &rt) in selected.iter().enumerate() {
                if unavailable[i].is_some() {
                    continue;
                }
                let r = (b.run)(rt, n);
                let lat = take_latencies();
                match r {
                    Ok(d) if round >= opts.warmup => {
                        samples[i].push(d.as_secs_f64());
                        if b.kind == Kind::Latency {
                            let mut lat = lat;
                            lat.sort_by(f64::total_cmp);
                            p50s[i].push(percentile(&lat, 0.50));
                            p99s[i].push(percentile(&lat, 0.99));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if !e.starts_with("unavailable") {
                            failed = true;
                        }
                        unavailable[i] = Some(e);
                    }
                }
            }
        }

        let base = b
            .baseline
            .and_then(|br| selected.iter().position(|&r| r == br))
            .filter(|&i| unavailable[i].is_none());
        if b.kind == Kind::Latency {
            for (i, &rt) in selected.iter().enumerate() {
                if let Some(why) = &unavailable[i] {
                    lat_table.push(format!("| {} | {} | – | – | – | {why} |", b.name, rt.label()));
                    continue;
                }
                let mut p50 = p50s[i].clone();
                let lo = p50.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = p50.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let med50 = median(&mut p50);
                let med99 = median(&mut p99s[i].clone());
                let ratio = match base {
                    Some(bi) if bi == i => "1 (baseline)".to_string(),
                    Some(bi) => {
                        let mut r: Vec<f64> = p50s[i].iter().zip(&p50s[bi]).map(|(a, b)| a / b).collect();
                        let rlo = r.iter().copied().fold(f64::INFINITY, f64::min);
                        let rhi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        format!("**{:.2}** ({rlo:.2}–{rhi:.2})", median(&mut r))
                    }
                    None => "n/a (baseline not run)".to_string(),
                };
                lat_table.push(format!(
                    "| {} | {} | {} | {}–{} | {} | {ratio} |",
                    b.name,
                    rt.label(),
                    fmt_lat(med50),
                    fmt_lat(lo),
                    fmt_lat(hi),
                    fmt_lat(med99),
                ));
            }
            notes.push(format!("- `{}` (n = {n}): {}", b.name, b.note));
            continue;
        }
        for (i, &rt) in selected.iter().enumerate() {
            if let Some(why) = &unavailable[i] {
                table.push(format!("| {} | {} | – | – | {why} |", b.name, rt.label()));
                continue;
            }
            let mut s = samples[i].clone();
            let lo = s.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = s.iter().copied().fold(0.0, f64::max);
            let med = median(&mut s);
            let ratio = match base {
                Some(bi) if bi == i => "1 (baseline)".to_string(),
                Some(bi) if matches!(rt, Rt::Uring | Rt::Fallback) => {
                    let mut r: Vec<f64> = samples[i].iter().zip(&samples[bi]).map(|(a, b)| a / b).collect();
                    let rlo = r.iter().copied().fold(f64::INFINITY, f64::min);
                    let rhi = r.iter().copied().fold(0.0, f64::max);
                    format!("**{:.2}** ({rlo:.2}–{rhi:.2})", median(&mut r))
                }
                Some(bi) => {
                    let mut r: Vec<f64> = samples[i].iter().zip(&samples[bi]).map(|(a, b)| a / b).collect();
                    format!("{:.2} (tokio vs tokio)", median(&mut r))
                }
                None if b.baseline.is_none() => "n/a (no tokio analogue)".to_string(),
                None => "n/a (baseline not run)".to_string(),
            };
            table.push(format!(
                "| {} | {} | {} ({}) | {}–{} | {ratio} |",
                b.name,
                rt.label(),
                fmt_time(med),
                fmt_per_op(med, n),
                fmt_time(lo),
                fmt_time(hi),
            ));
        }
        notes.push(format!("- `{}` (n = {n}): {}", b.name, b.note));
    }

    println!("{}\n", table.join("\n"));
    if lat_table.len() > 2 {
        println!("Latency (per round: p50/p99 of that round's samples):\n");
        println!("{}\n", lat_table.join("\n"));
    }
    println!("{}", notes.join("\n"));
    if failed {
        eprintln!("some benchmark failed (see the table)");
        std::process::exit(1);
    }
}
