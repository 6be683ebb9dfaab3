//! Copies a file: `file_copy SRC DST`.
//!
//! Opens the source with `File::open`, creates (or truncates) the
//! destination with `File::create`, then copies 256 KiB chunks with
//! `read_at` / `write_all_at`, reusing one buffer, and prints the number of
//! bytes copied. On io_uring every step is an io_uring operation; on the
//! fallback backend (`RINGLOOP_DRIVER=fallback`) they run on the blocking
//! pool.
//!
//! ```text
//! $ file_copy Cargo.toml /tmp/copy.toml
//! copied 1234 bytes
//! ```

use std::process::ExitCode;

use ringloop::EventLoop;
use ringloop::fs::File;

const CHUNK: usize = 256 * 1024;

async fn copy(src: String, dst: String) -> std::io::Result<u64> {
    let from = File::open(&src).await?;
    let to = File::create(&dst).await?;
    let mut buf = Vec::with_capacity(CHUNK);
    let mut offset = 0u64;
    loop {
        buf.clear();
        let (res, b) = from.read_at(buf, offset).await;
        let n = res?;
        if n == 0 {
            break;
        }
        let (res, b) = to.write_all_at(b, offset).await;
        res?;
        buf = b;
        offset += n as u64;
    }
    to.sync_all().await?;
    to.close().await?;
    from.close().await?;
    Ok(offset)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, dst] = args.as_slice() else {
        eprintln!("usage: file_copy SRC DST");
        return ExitCode::from(2);
    };
    let lp = match EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("file_copy: cannot create the event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    match lp.run_until_complete(copy(src.clone(), dst.clone())) {
        Ok(Ok(n)) => {
            println!("copied {n} bytes");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("file_copy: {src} -> {dst}: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("file_copy: {e}");
            ExitCode::FAILURE
        }
    }
}
