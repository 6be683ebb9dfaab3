//! Random 4 KiB file reads at queue depth 1 and 32: ringloop on io_uring
//! (real ring reads), ringloop on the fallback (blocking pool), tokio
//! current_thread (`spawn_blocking` + `pread`, which is what `tokio::fs`
//! does), and plain `pread` on OS threads (1 or 32 threads) as the baseline.
//! Full mode: a 256 MiB file, 100 000 reads per run, 3 rounds; quick: 64
//! MiB, 20 000 reads, 1 round.
//!
//! The file lives in `target/ringloop-bench/` and is read right after being
//! written, so reads are page-cache hits: this measures the runtime and
//! syscall path, not the disk. Every read's first 8 bytes are checked.
//! `fio --ioengine=io_uring` is reported as the ceiling when installed.
//! Shared by `benches/files.rs` and `benches/compare.rs`.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BLOCK: u64 = 4096;

fn file_path() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target"));
    let dir = if target.is_absolute() {
        target
    } else {
        manifest.join(target)
    }
    .join("ringloop-bench");
    let _ = fs::create_dir_all(&dir);
    dir.join("files.dat")
}

/// Block `i` starts with `i` as 8 little-endian bytes.
fn ensure_file(path: &Path, size: u64) -> std::io::Result<()> {
    if fs::metadata(path).map(|m| m.len() == size).unwrap_or(false) {
        return Ok(());
    }
    let mut f = fs::File::create(path)?;
    let mut block = vec![0xA5u8; BLOCK as usize];
    for i in 0..size / BLOCK {
        block[..8].copy_from_slice(&i.to_le_bytes());
        f.write_all(&block)?;
    }
    f.sync_all()
}

fn offsets(n: usize, blocks: u64, seed: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % blocks) * BLOCK
        })
        .collect()
}

fn check(buf: &[u8], off: u64) {
    assert!(buf.len() >= 8, "short read");
    assert_eq!(
        u64::from_le_bytes(buf[..8].try_into().unwrap()),
        off / BLOCK,
        "wrong block"
    );
}

fn ringloop_run(
    choice: ringloop::DriverChoice,
    path: &Path,
    offs: Arc<Vec<u64>>,
    qd: usize,
) -> Result<Duration, String> {
    let lp = ringloop::EventLoop::builder()
        .driver(choice)
        .build()
        .map_err(|e| e.to_string())?;
    let path = path.to_path_buf();
    lp.run_until_complete(async move {
        let file = std::rc::Rc::new(ringloop::fs::File::open(&path).await.unwrap());
        let start = Instant::now();
        let workers: Vec<_> = (0..qd)
            .map(|w| {
                let (file, offs) = (file.clone(), offs.clone());
                ringloop::spawn(async move {
                    let mut buf = Vec::with_capacity(BLOCK as usize);
                    for &off in offs.iter().skip(w).step_by(qd) {
                        buf.clear();
                        let (res, b) = file.read_at(buf, off).await;
                        res.unwrap();
                        check(&b, off);
                        buf = b;
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        start.elapsed()
    })
    .map_err(|e| e.to_string())
}

fn tokio_run(path: &Path, offs: Arc<Vec<u64>>, qd: usize) -> Duration {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let file = Arc::new(fs::File::open(path).unwrap());
    rt.block_on(async move {
        let start = Instant::now();
        let workers: Vec<_> = (0..qd)
            .map(|w| {
                let (file, offs) = (file.clone(), offs.clone());
                tokio::spawn(async move {
                    for &off in offs.iter().skip(w).step_by(qd) {
                        let f = file.clone();
                        let buf = tokio::task::spawn_blocking(move || {
                            let mut b = vec![0u8; BLOCK as usize];
                            let n = f.read_at(&mut b, off).unwrap();
                            b.truncate(n);
                            b
                        })
                        .await
                        .unwrap();
                        check(&buf, off);
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        start.elapsed()
    })
}

fn threads_run(path: &Path, offs: Arc<Vec<u64>>, qd: usize) -> Duration {
    let file = Arc::new(fs::File::open(path).unwrap());
    let start = Instant::now();
    let handles: Vec<_> = (0..qd)
        .map(|w| {
            let (file, offs) = (file.clone(), offs.clone());
            std::thread::spawn(move || {
                let mut b = vec![0u8; BLOCK as usize];
                for &off in offs.iter().skip(w).step_by(qd) {
                    let n = file.read_at(&mut b, off).unwrap();
                    check(&b[..n], off);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

/// fio's read IOPS with `--ioengine=io_uring` at depth `qd`, or why not.
fn fio_iops(path: &Path, qd: usize) -> Result<f64, String> {
    let out = std::process::Command::new("fio")
        .args([
            "--name=ringloop",
            &format!("--filename={}", path.display()),
            "--rw=randread",
            "--bs=4k",
            "--ioengine=io_uring",
            // fio drops the file's page cache before a job by default, which
            // would turn this into a disk benchmark.
            "--invalidate=0",
            &format!("--iodepth={qd}"),
            "--runtime=3",
            "--time_based",
            "--output-format=terse",
            "--terse-version=3",
        ])
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "fio not installed (apt-get install fio)".to_string(),
            _ => format!("cannot run fio: {e}"),
        })?;
    // Terse v3: field 8 (1-based) is read IOPS.
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .and_then(|l| l.split(';').nth(7)?.parse().ok())
        .ok_or_else(|| {
            let err = String::from_utf8_lossy(&out.stderr);
            format!("fio failed: {}", err.lines().next().unwrap_or("no output"))
        })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Size of the run: `Smoke` under `cargo test`, `Quick` for `--quick`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Smoke,
    Quick,
    Full,
}

/// Runs the file-read comparison and returns its Markdown report.
pub fn run(mode: Mode) -> String {
    let (size, reads, rounds) = match mode {
        Mode::Smoke => (1 << 20, 256, 1),
        Mode::Quick => (64 << 20, 20_000, 1),
        Mode::Full => (256 << 20, 100_000, 3),
    };
    let mut md = String::new();
    let path = file_path();
    if let Err(e) = ensure_file(&path, size) {
        let _ = writeln!(
            md,
            "File reads: cannot write the benchmark file {}: {e}",
            path.display()
        );
        return md;
    }
    let offs = Arc::new(offsets(reads, size / BLOCK, 0x9E37_79B9_7F4A_7C15));
    let names = [
        "ringloop/uring",
        "ringloop/fallback",
        "tokio-ct (spawn_blocking pread)",
        "pread threads",
    ];
    let _ = writeln!(
        md,
        "Random 4 KiB reads of a {} MiB page-cache-hot file, {reads} reads per run, medians of {rounds} round(s):\n",
        size >> 20
    );
    let _ = writeln!(md, "| depth | runtime | reads/s | µs/read | time vs tokio |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|");
    for qd in [1usize, 32] {
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        let mut errors: Vec<Option<String>> = vec![None; names.len()];
        for _ in 0..rounds {
            for (i, _) in names.iter().enumerate() {
                let r = match i {
                    0 => ringloop_run(ringloop::DriverChoice::Uring, &path, offs.clone(), qd),
                    1 => ringloop_run(ringloop::DriverChoice::Fallback, &path, offs.clone(), qd),
                    2 => Ok(tokio_run(&path, offs.clone(), qd)),
                    _ => Ok(threads_run(&path, offs.clone(), qd)),
                };
                match r {
                    Ok(d) => samples[i].push(d.as_secs_f64()),
                    Err(e) => errors[i] = Some(e),
                }
            }
        }
        let tokio_t = if samples[2].is_empty() {
            f64::NAN
        } else {
            median(samples[2].clone())
        };
        for (i, name) in names.iter().enumerate() {
            if let Some(e) = &errors[i] {
                let _ = writeln!(md, "| {qd} | {name} | unavailable: {e} | | |");
                continue;
            }
            let t = median(samples[i].clone());
            let _ = writeln!(
                md,
                "| {qd} | {name} | {:.0} | {:.2} | {:.2} |",
                reads as f64 / t,
                t * 1e6 / reads as f64,
                t / tokio_t
            );
        }
        if mode != Mode::Smoke {
            match fio_iops(&path, qd) {
                Ok(iops) => {
                    let _ = writeln!(
                        md,
                        "| {qd} | fio io_uring (ceiling) | {iops:.0} | {:.2} | |",
                        1e6 / iops
                    );
                }
                Err(why) => {
                    let _ = writeln!(md, "| {qd} | fio io_uring (ceiling) | skipped: {why} | | |");
                }
            }
        }
    }
    md
}
