//! Ports the tutorial's "如何取消協程中的task" program: three `get_html`
//! coroutines run under `loop.run_until_complete(asyncio.wait(tasks))`;
//! pressing Ctrl+C (SIGINT) cancels every task, stops the loop, runs it once
//! more so the cancellations land, and closes it.
//!
//! ```text
//! $ cargo run --example ctrl_c      # press Ctrl+C within two seconds
//! waiting
//! waiting
//! waiting
//! ^Ccancel task
//! true
//! cancel task
//! true
//! cancel task
//! true
//! ```
//!
//! Without Ctrl+C it prints `done after 2s`, `done after 3s` twice and ends
//! after three seconds.
//!
//! Python turns SIGINT into a `KeyboardInterrupt` raised out of
//! `run_until_complete`. Rust has no asynchronous exceptions, so the program
//! races the `wait` against [`signal::ctrl_c()`] and takes the `except`
//! branch when the signal wins. `ctrl_c()` installs its SIGINT handler when
//! called, before the tasks start: from then on Ctrl+C no longer kills the
//! process. `task.cancel()` prints Rust's `true` for Python's `True`.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use ringloop::{EventLoop, ReturnWhen, all_tasks, signal, sleep, wait};

async fn get_html(sleep_times: u64) {
    println!("waiting");
    sleep(Duration::from_secs(sleep_times)).await;
    println!("done after {sleep_times}s");
}

/// How `run_until_complete` ended.
enum Ended {
    /// Every task finished (the `try` block ran to its end).
    AllDone,
    /// SIGINT arrived first (`except KeyboardInterrupt`).
    Interrupted,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lp = EventLoop::new()?;
    let interrupt = signal::ctrl_c();
    let mut tasks = Vec::new();
    for sleep_times in [2, 3, 3] {
        tasks.push(lp.create_task(get_html(sleep_times))?);
    }
    let ended = lp.run_until_complete(async move {
        let mut all_done = pin!(wait(tasks, ReturnWhen::AllCompleted));
        let mut interrupt = pin!(interrupt);
        poll_fn(|cx| {
            if let Poll::Ready(res) = interrupt.as_mut().poll(cx) {
                return Poll::Ready(res.map(|()| Ended::Interrupted).map_err(|e| e.to_string()));
            }
            if let Poll::Ready(res) = all_done.as_mut().poll(cx) {
                return Poll::Ready(res.map(|_| Ended::AllDone).map_err(|e| e.to_string()));
            }
            Poll::Pending
        })
        .await
    });
    let outcome = match ended {
        Ok(Ok(Ended::Interrupted)) => {
            for task in all_tasks() {
                println!("cancel task");
                println!("{}", task.cancel());
            }
            lp.stop();
            // One more iteration: the cancelled tasks drop their futures.
            lp.run_forever().map_err(|e| e.to_string())
        }
        Ok(Ok(Ended::AllDone)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(e.to_string()),
    };
    // `finally: loop.close()`
    lp.close()?;
    Ok(outcome?)
}
