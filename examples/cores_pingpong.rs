//! Cross-loop ping-pong: one-way latency (p50/p99, half the round trip)
//! and messages per second between two loops on two cores.
//!
//! ```sh
//! cargo run --release --example cores_pingpong -- --rounds 100000
//! ```
//!
//! Rows: ringloop loops with `MSG_RING` wake-ups (io_uring), ringloop
//! loops with the eventfd path forced (`UringFeatures::msg_ring` off),
//! ringloop on the fallback backend, two tokio current_thread runtimes
//! with tokio mpsc channels, and two plain threads with std channels (the
//! floor). Threads are pinned to the first two allowed CPUs when there are
//! two (`--no-pin`: never). `--only TEXT` runs the rows whose name
//! contains TEXT. `--quiet` prints only which rows ran (used by the examples test).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringloop::cores::{self, Pinning, channel};
use ringloop::{DriverChoice, UringFeatures};

struct Row {
    name: &'static str,
    /// Round-trip times.
    rtts: Vec<Duration>,
    total: Duration,
}

impl Row {
    fn print(&mut self, quiet: bool) {
        if quiet {
            println!("ran: {}", self.name);
            return;
        }
        self.rtts.sort();
        let pct = |p: f64| self.rtts[((self.rtts.len() as f64 * p) as usize).min(self.rtts.len() - 1)] / 2;
        let msgs_per_s = 2.0 * self.rtts.len() as f64 / self.total.as_secs_f64();
        println!(
            "{:<28} one-way p50 {:>8.2} us  p99 {:>8.2} us  {:>10.0} msg/s",
            self.name,
            pct(0.50).as_secs_f64() * 1e6,
            pct(0.99).as_secs_f64() * 1e6,
            msgs_per_s
        );
    }
}

static NO_PIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn cpus() -> Option<Vec<usize>> {
    if NO_PIN.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let cpus = cores::allowed_cpus().ok()?;
    (cpus.len() >= 2).then(|| cpus[..2].to_vec())
}

fn ringloop_row(name: &'static str, b: cores::Builder, rounds: usize) -> Option<Row> {
    let (to1, from0) = channel::unbounded::<Instant>();
    let (to0, from1) = channel::unbounded::<Instant>();
    let ends = Arc::new(Mutex::new(vec![Some((to1, from1)), Some((to0, from0))]));
    let b = match cpus() {
        Some(c) => b.pinning(Pinning::Cpus(c)),
        None => b,
    };
    let out = b.loops(2).run(move |idx| {
        let (tx, mut rx) = ends.lock().unwrap()[idx.get()].take().unwrap();
        async move {
            let mut rtts = Vec::with_capacity(if idx.get() == 0 { rounds } else { 0 });
            let start = Instant::now();
            if idx.get() == 0 {
                for _ in 0..rounds {
                    tx.try_send(Instant::now()).unwrap();
                    let sent = rx.recv().await.unwrap();
                    rtts.push(sent.elapsed());
                }
            } else {
                while let Some(t) = rx.recv().await {
                    if tx.try_send(t).is_err() {
                        break;
                    }
                }
            }
            (rtts, start.elapsed())
        }
    });
    match out {
        Ok(mut v) => {
            let (rtts, total) = v.swap_remove(0).unwrap();
            Some(Row { name, rtts, total })
        }
        Err(e) => {
            eprintln!("{name}: skipped ({e})");
            None
        }
    }
}

fn tokio_row(rounds: usize) -> Row {
    let (to1, mut from0) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let (to0, mut from1) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let rt = || tokio::runtime::Builder::new_current_thread().build().unwrap();
    let pong = std::thread::spawn(move || {
        rt().block_on(async move {
            while let Some(t) = from0.recv().await {
                if to0.send(t).is_err() {
                    break;
                }
            }
        })
    });
    let (rtts, total) = rt().block_on(async move {
        let start = Instant::now();
        let mut rtts = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            to1.send(Instant::now()).unwrap();
            rtts.push(from1.recv().await.unwrap().elapsed());
        }
        (rtts, start.elapsed())
    });
    pong.join().unwrap();
    Row {
        name: "tokio current_thread x2",
        rtts,
        total,
    }
}

fn std_row(rounds: usize) -> Row {
    let (to1, from0) = std::sync::mpsc::channel::<Instant>();
    let (to0, from1) = std::sync::mpsc::channel::<Instant>();
    let pong = std::thread::spawn(move || {
        while let Ok(t) = from0.recv() {
            if to0.send(t).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut rtts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        to1.send(Instant::now()).unwrap();
        rtts.push(from1.recv().unwrap().elapsed());
    }
    let total = start.elapsed();
    drop(to1);
    pong.join().unwrap();
    Row {
        name: "std threads + mpsc (floor)",
        rtts,
        total,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rounds = 20_000;
    let mut quiet = false;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().ok_or("--rounds N")?.parse()?,
            "--quiet" => quiet = true,
            "--only" => only = Some(args.next().ok_or("--only TEXT")?),
            "--no-pin" => NO_PIN.store(true, std::sync::atomic::Ordering::Relaxed),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let rounds = rounds.max(1);
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    let uring = cores::Builder::new().driver(DriverChoice::Uring);
    let mut no_msg_ring = UringFeatures::all();
    no_msg_ring.msg_ring = false;
    let mut rows = Vec::new();
    if wanted("ringloop io_uring MSG_RING") {
        rows.push(ringloop_row("ringloop io_uring MSG_RING", uring.clone(), rounds));
    }
    if wanted("ringloop io_uring eventfd") {
        rows.push(ringloop_row(
            "ringloop io_uring eventfd",
            uring.uring_features(no_msg_ring),
            rounds,
        ));
    }
    if wanted("ringloop readiness") {
        let b = cores::Builder::new().driver(DriverChoice::Fallback);
        rows.push(ringloop_row("ringloop readiness", b, rounds));
    }
    if wanted("tokio current_thread x2") {
        rows.push(Some(tokio_row(rounds)));
    }
    if wanted("std threads + mpsc (floor)") {
        rows.push(Some(std_row(rounds)));
    }
    if !quiet {
        println!("{rounds} round trips, CPUs {:?}", cpus());
    }
    for row in rows.iter_mut().flatten() {
        row.print(quiet);
    }
    if !quiet {
        let w = cores::wake_counts();
        println!(
            "wake-ups: {} MSG_RING sent / {} reaped, {} eventfd writes / {} eventfd reads reaped",
            w.sent_msg_ring, w.received_msg_ring, w.sent_eventfd, w.received_eventfd
        );
    }
    Ok(())
}
