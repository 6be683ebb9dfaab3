//! Ports the tutorial's done-callback program:
//! `task.add_done_callback(partial(callback, "http://www.imooc.com"))`.
//! `functools.partial` binding the url becomes a closure capturing it; the
//! callback still receives the finished task last, like `future`.
//!
//! ```text
//! start get url
//! http://www.imooc.com
//! send email to 紅燒肉
//! 紅燒肉
//! ```

use std::time::Duration;

use ringloop::{EventLoop, TaskRef, sleep};

async fn get_html(_url: &str) -> &'static str {
    println!("start get url");
    sleep(Duration::from_secs(2)).await;
    "紅燒肉"
}

fn callback(url: &str, _future: &TaskRef) {
    println!("{url}");
    println!("send email to 紅燒肉");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lp = EventLoop::new()?;
    let task = lp.create_task(get_html("http://www.imooc.com"))?;
    let url = "http://www.imooc.com";
    task.add_done_callback(move |future| callback(url, future));
    lp.run_until_complete(task.finished())?;
    let result = task.take_result().ok_or("the task is not done")??;
    println!("{result}");
    Ok(())
}
