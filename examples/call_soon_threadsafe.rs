//! Ports the tutorial's `call_soon_threadsafe` section: "like `call_soon`, but
//! thread-safe". Another thread schedules callbacks on the loop through a
//! [`LoopHandle`](ringloop::LoopHandle) (the `Send` half of the loop); each
//! one wakes the loop, which is otherwise idle in `run_forever`, and runs on
//! the loop's thread, so the callbacks never race with each other.
//!
//! ```text
//! success time 1
//! success time 2
//! success time 3
//! ```
//!
//! The tutorial shows no complete program here; as in its other examples,
//! the last callback is `stoploop`, so `run_forever` returns.

use std::time::Duration;

use ringloop::EventLoop;

fn callback(sleep_times: u64) {
    println!("success time {sleep_times}");
}

fn stoploop(lp: &EventLoop) {
    lp.stop();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lp = EventLoop::new()?;
    let handle = lp.handle();
    let worker = std::thread::spawn(move || -> Result<(), ringloop::LoopError> {
        for n in 1..=3 {
            // Some blocking work on this thread; meanwhile the loop sleeps.
            std::thread::sleep(Duration::from_millis(100));
            handle.call_soon_threadsafe(move || callback(n))?;
        }
        // loop.call_soon_threadsafe(stoploop, loop): an `EventLoop` cannot
        // leave its thread, so the callback looks up the loop it runs on.
        // (`handle.stop()` is the shortcut.)
        handle.call_soon_threadsafe(|| stoploop(&ringloop::current().expect("callbacks run on the loop")))
    });
    lp.run_forever()?;
    worker.join().expect("worker thread panicked")?;
    Ok(())
}
