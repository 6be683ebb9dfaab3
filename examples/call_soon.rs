//! Ports the tutorial's `call_soon` program: schedule a plain function (not a
//! coroutine) for the next loop iteration, then `stoploop`, and start the
//! loop with `run_forever`.
//!
//! ```text
//! success time 2
//! ```

use ringloop::EventLoop;

fn callback(sleep_times: u64) {
    println!("success time {sleep_times}");
}

fn stoploop(lp: &EventLoop) {
    lp.stop();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lp = EventLoop::new()?;
    // loop.call_soon(callback, 2): the arguments are bound by a closure.
    lp.call_soon(|| callback(2))?;
    // loop.call_soon(stoploop, loop): a clone is another handle to the same loop.
    let lp2 = lp.clone();
    lp.call_soon(move || stoploop(&lp2))?;
    lp.run_forever()?;
    Ok(())
}
