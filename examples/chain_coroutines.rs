//! Ports the tutorial's "chain coroutines" program (from the asyncio docs):
//! `print_sum` awaits the sub-coroutine `compute`, which sleeps one second.
//!
//! ```text
//! Compute 1 + 2 ...
//! 1 + 2 = 3
//! ```

use std::time::Duration;

use ringloop::{EventLoop, sleep};

async fn compute(x: i32, y: i32) -> i32 {
    println!("Compute {x} + {y} ...");
    sleep(Duration::from_secs(1)).await;
    x + y
}

async fn print_sum(x: i32, y: i32) {
    let result = compute(x, y).await;
    println!("{x} + {y} = {result}");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lp = EventLoop::new()?;
    lp.run_until_complete(print_sum(1, 2))?;
    lp.close()?;
    Ok(())
}
