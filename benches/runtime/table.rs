//! The benchmark table: every group, its runtimes, sizes and notes.

use super::*;

pub const BENCHES: &[Bench] = &[
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
