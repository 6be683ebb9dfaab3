//! Ports the tutorial's "如何獲得協(xié)程的返回值" programs: wrap the coroutine in a
//! task, run the loop until it is done, then read `future.result()`.
//!
//! Without arguments it uses `asyncio.ensure_future(...)` (here
//! [`ringloop::spawn`], which picks the thread's current loop, as
//! `ensure_future` does); with `--create-task` it uses the tutorial's
//! alternative `loop.create_task(...)`. Both print:
//!
//! ```text
//! start get url
//! 紅燒肉
//! ```

use std::time::Duration;

use ringloop::{EventLoop, sleep};

async fn get_html(_url: &str) -> &'static str {
    println!("start get url");
    sleep(Duration::from_secs(2)).await;
    "紅燒肉"
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lp = EventLoop::new()?;
    let get_future = if std::env::args().nth(1).as_deref() == Some("--create-task") {
        // task = loop.create_task(get_html("http://www.imooc.com"))
        lp.create_task(get_html("http://www.imooc.com"))?
    } else {
        // get_future = asyncio.ensure_future(get_html("http://www.imooc.com"))
        ringloop::spawn(get_html("http://www.imooc.com"))
    };
    // loop.run_until_complete(get_future): `run_until_complete` takes its
    // future by value, so give it `finished()` and keep the task to ask for
    // its result afterwards.
    lp.run_until_complete(get_future.finished())?;
    // print(get_future.result())
    let result = get_future.take_result().ok_or("the task is not done")??;
    println!("{result}");
    Ok(())
}
