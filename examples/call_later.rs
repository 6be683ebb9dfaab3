//! Ports the tutorial's `call_later` program: callbacks run in order of their
//! delay, not of scheduling.
//!
//! ```text
//! success time 1
//! success time 2
//! success time 3
//! ```
//!
//! The tutorial's `run_forever()` never returns; this port adds a stop
//! callback after the last timer so the program exits.

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
    lp.call_later(Duration::from_secs(2), || callback(2))?;
    lp.call_later(Duration::from_secs(1), || callback(1))?;
    lp.call_later(Duration::from_secs(3), || callback(3))?;
    // Not in the tutorial: stop once the last timer has run (equal deadlines
    // fire in scheduling order, so this runs right after `callback(3)`).
    let lp2 = lp.clone();
    lp.call_later(Duration::from_secs(3), move || stoploop(&lp2))?;
    lp.run_forever()?;
    Ok(())
}
