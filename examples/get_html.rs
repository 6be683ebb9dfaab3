//! Ports the tutorial's first program (asyncio 的簡單使用): one coroutine
//! driven by `loop.run_until_complete(get_html(...))`, then the elapsed time.
//!
//! ```text
//! start get url
//! end get url
//! 2.00
//! ```

use std::time::{Duration, Instant};

use ringloop::{EventLoop, sleep};

async fn get_html(_url: &str) {
    println!("start get url");
    sleep(Duration::from_secs(2)).await;
    println!("end get url");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start_time = Instant::now();
    // asyncio.get_event_loop(): the backend follows RINGLOOP_DRIVER=uring|fallback.
    let lp = EventLoop::new()?;
    // run_until_complete blocks until the coroutine is done, like a thread's join().
    lp.run_until_complete(get_html("http://www.imooc.com"))?;
    println!("{:.2}", start_time.elapsed().as_secs_f64());
    Ok(())
}
