//! Ports the tutorial's "wait和gather" section: `asyncio.wait(tasks)` versus
//! `asyncio.gather(*tasks)`, grouping with `gather(*group1, *group2)`,
//! gathering gathers (`gather(group1, group2)`), and cancelling a whole
//! group with `group2.cancel()`.
//!
//! The tutorial prints no output for these snippets; `get_html` here prints
//! the url it fetches so the groups can be told apart, and returns it so the
//! gathered results can be shown. Each step takes about two seconds.
//!
//! Python's `gather` takes `*args`; ringloop's [`gather`] takes any iterator
//! of futures of one type (`group1.into_iter().chain(group2)`), and
//! [`gather_tasks`] joins tasks, including other gathers.
//!
//! As in asyncio, `group2.cancel()` cancels the group's children at once,
//! so they never start (no `start get http://www.imooc.com` in that step).

use std::time::Duration;

use ringloop::{EventLoop, ReturnWhen, gather, gather_tasks, gather_tasks_settled, sleep, wait};

async fn get_html(url: &'static str) -> &'static str {
    println!("start get {url}");
    sleep(Duration::from_secs(2)).await;
    println!("end get {url}");
    url
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lp = EventLoop::new()?;

    println!("--- asyncio.wait(tasks) ---");
    let mut tasks = Vec::new();
    for _ in 0..2 {
        tasks.push(lp.create_task(get_html("http://www.imooc.com"))?);
    }
    let (done, pending) = lp.run_until_complete(wait(tasks, ReturnWhen::AllCompleted))??;
    println!("done: {}, pending: {}", done.len(), pending.len());

    println!("--- asyncio.gather(*tasks) ---");
    let tasks: Vec<_> = (0..2).map(|_| get_html("http://www.imooc.com")).collect();
    let results = lp.run_until_complete(gather(tasks))??;
    println!("{results:?}");

    println!("--- asyncio.gather(*group1, *group2) ---");
    let group1: Vec<_> = (0..2).map(|_| get_html("http://projectsedu.com")).collect();
    let group2: Vec<_> = (0..2).map(|_| get_html("http://www.imooc.com")).collect();
    let results = lp.run_until_complete(gather(group1.into_iter().chain(group2)))??;
    println!("{results:?}");

    println!("--- asyncio.gather(group1, group2) ---");
    let group1 = gather((0..2).map(|_| get_html("http://projectsedu.com")));
    let group2 = gather((0..2).map(|_| get_html("http://www.imooc.com")));
    let results = lp.run_until_complete(gather_tasks([group1, group2]))??;
    println!("{results:?}");

    println!("--- group2.cancel() ---");
    let group1 = gather((0..2).map(|_| get_html("http://projectsedu.com")));
    let group2 = gather((0..2).map(|_| get_html("http://www.imooc.com")));
    group2.cancel();
    // gather(group1, group2, return_exceptions=True): every outcome in place.
    let results = lp.run_until_complete(gather_tasks_settled([group1, group2]))??;
    for (name, result) in ["group1", "group2"].iter().zip(results) {
        match result {
            Ok(urls) => println!("{name}: {urls:?}"),
            Err(e) if e.is_cancelled() => println!("{name}: cancelled"),
            Err(e) => println!("{name}: {e}"),
        }
    }
    Ok(())
}
