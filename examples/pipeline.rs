//! A subprocess pipeline, like `printf 'pear\napple\nfig\n' | sort | tr a-z A-Z`:
//! three children connected by pipes, fed from and read by the loop.
//!
//! ```sh
//! cargo run --example pipeline
//! ```
//!
//! The first child (`cat`) gets its input from the loop through an async
//! pipe; its stdout becomes `sort`'s stdin, whose stdout becomes `tr`'s;
//! the loop reads `tr`'s output and waits for all three exit statuses.
//! Prints `APPLE`, `FIG`, `PEAR`, then the three statuses.

use ringloop::EventLoop;
use ringloop::process::{Command, Stdio};

fn main() -> std::io::Result<()> {
    let lp = EventLoop::new()?;
    lp.run_until_complete(async {
        let mut cat = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let cat_out = Stdio::try_from(cat.stdout.take().expect("piped"))?;
        let mut sort = Command::new("sort").stdin(cat_out).stdout(Stdio::piped()).spawn()?;
        let sort_out = Stdio::try_from(sort.stdout.take().expect("piped"))?;
        let mut tr = Command::new("tr")
            .args(["a-z", "A-Z"])
            .stdin(sort_out)
            .stdout(Stdio::piped())
            .spawn()?;

        // Feed the first child, then close its stdin so the pipeline ends.
        let stdin = cat.stdin.take().expect("piped");
        let (res, _) = stdin.write_all(b"pear\napple\nfig\n".as_slice()).await;
        res?;
        drop(stdin);

        let stdout = tr.stdout.take().expect("piped");
        let (res, out) = stdout.read_to_end(Vec::new()).await;
        res?;
        print!("{}", String::from_utf8_lossy(&out));
        for (name, child) in [("cat", &mut cat), ("sort", &mut sort), ("tr", &mut tr)] {
            println!("{name}: {}", child.wait().await?);
        }
        Ok(())
    })?
}
