//! Ports the tutorial's second program: ten `get_html` coroutines run
//! concurrently with `loop.run_until_complete(asyncio.wait(tasks))`, which
//! takes about two seconds in total, not twenty.
//!
//! ```text
//! start get url      (ten times)
//! end get url        (ten times)
//! 2.00
//! ```
//!
//! `--blocking [SECS]` reproduces the tutorial's warning: replace
//! `await asyncio.sleep(2)` by a synchronous `time.sleep(2)` (here
//! `std::thread::sleep`) and the coroutines run one after the other, because
//! a blocking call never yields to the loop. With the default of 2 s that
//! takes 20+ s, printing `start get url` / `end get url` pairs in turn;
//! `--blocking 0.2` shows the same sequential behaviour in about 2 s.

use std::time::{Duration, Instant};

use ringloop::{EventLoop, ReturnWhen, sleep, wait};

async fn get_html(_url: &str, blocking: Option<Duration>) {
    println!("start get url");
    match blocking {
        // Wrong inside a coroutine: blocks the whole loop.
        Some(d) => std::thread::sleep(d),
        None => sleep(Duration::from_secs(2)).await,
    }
    println!("end get url");
}

fn parse_args() -> Result<Option<Duration>, String> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => Ok(None),
        Some("--blocking") => {
            let secs = match args.next() {
                None => 2.0,
                Some(s) => s.parse::<f64>().map_err(|e| format!("--blocking {s}: {e}"))?,
            };
            Duration::try_from_secs_f64(secs)
                .map(Some)
                .map_err(|e| format!("--blocking {secs}: {e}"))
        }
        Some(other) => Err(format!(
            "usage: concurrent_get_html [--blocking [SECS]] (got {other:?})"
        )),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let blocking = parse_args()?;
    let start_time = Instant::now();
    let lp = EventLoop::new()?;
    // asyncio.wait() takes futures; coroutines become tasks first.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        tasks.push(lp.create_task(get_html("http://www.imooc.com", blocking))?);
    }
    lp.run_until_complete(wait(tasks, ReturnWhen::AllCompleted))??;
    println!("{:.2}", start_time.elapsed().as_secs_f64());
    Ok(())
}
