//! The workloads, one function per benchmark group.

use super::*;

/// `size.iters` rounds of: spawn `size.per_iter` tasks, join them all.
pub fn spawn_join(rt: Rt, size: Size) -> Sample {
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
pub fn spawn_detached(rt: Rt, size: Size) -> Sample {
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
pub fn call_soon_batch(rt: Rt, size: Size) -> Sample {
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

pub fn chain_step(lp: EventLoop, counter: Rc<Cell<u64>>, left: u64) {
    counter.set(counter.get() + 1);
    if left > 1 {
        let next = lp.clone();
        lp.call_soon(move || chain_step(next, counter, left - 1))
            .expect("call_soon");
    } else {
        lp.stop();
    }
}

pub fn call_soon_chain(rt: Rt, size: Size) -> Sample {
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

pub fn yield_one(rt: Rt, size: Size) -> Sample {
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

pub fn yield_two(rt: Rt, size: Size) -> Sample {
    yield_many(rt, size, 2)
}

pub fn yield_hundred(rt: Rt, size: Size) -> Sample {
    yield_many(rt, size, 100)
}

/// `tasks` tasks each doing `size.ops() / tasks` yields.
pub fn yield_many(rt: Rt, size: Size, tasks: u64) -> Sample {
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
pub async fn poll_once<F: Future + ?Sized>(mut f: Pin<&mut F>) {
    std::future::poll_fn(|cx| {
        let _ = f.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await
}

/// Timer deadline of the i-th sleep: 1-2 ms, scrambled so the insertion
/// order is not the deadline order.
pub fn timer_delay(i: u64) -> Duration {
    Duration::from_micros(1000 + (i.wrapping_mul(7919) % 1000))
}

/// `size.iters` rounds of: insert `size.per_iter` timers, cancel 90%, await
/// the rest.
pub fn timers(rt: Rt, size: Size) -> Sample {
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
                    // `v` has capacity `n` and is never grown past it; the element
                    // is only dropped in place (assigning `None`, or dropping `v`).
                    // SAFETY: so the pinned element is never moved.
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

pub fn xthread(rt: Rt, size: Size) -> Sample {
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
pub struct Alternation {
    pub last: Cell<u8>,
    pub violations: Cell<u64>,
    pub count: Cell<u64>,
}

impl Alternation {
    pub fn acquired(&self, me: u8) {
        if self.last.get() == me {
            self.violations.set(self.violations.get() + 1);
        }
        self.last.set(me);
        self.count.set(self.count.get() + 1);
    }

    /// Acquisition count if the holders strictly alternated, else a value
    /// that fails the check.
    pub fn result(&self) -> u64 {
        if self.violations.get() == 0 {
            self.count.get()
        } else {
            u64::MAX - self.violations.get()
        }
    }
}

pub fn lock_pingpong(rt: Rt, size: Size) -> Sample {
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

pub fn queue_pingpong(rt: Rt, size: Size) -> Sample {
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
pub fn gather_bench(rt: Rt, size: Size) -> Sample {
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

pub const SLEEP: Duration = Duration::from_millis(1);

/// Lateness of `t1` for a 1 ms sleep requested at `t0`, in seconds (signed).
pub fn lateness(t0: Instant, t1: Instant) -> f64 {
    let deadline = t0 + SLEEP;
    if t1 >= deadline {
        (t1 - deadline).as_secs_f64()
    } else {
        -(deadline - t1).as_secs_f64()
    }
}

/// Wall time of `size.ops()` sequential 1 ms sleeps; records each one's
/// lateness.
pub fn sleep_lateness(rt: Rt, size: Size) -> Sample {
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
pub const XLAT_PAUSE: Duration = Duration::from_micros(200);

/// Sum of `size.ops()` cross-thread wake latencies (the pauses between them
/// are not counted); records each one.
pub fn xthread_latency(rt: Rt, size: Size) -> Sample {
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
