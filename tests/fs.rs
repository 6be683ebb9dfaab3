//! Files and directories on both backends.

mod common;

use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use common::{child_loop, open_fds, run_child};
use futures_util::poll;
use ringloop::buf::IoBuf;
use ringloop::fs::{self, File, OpenOptions};
use ringloop::{EventLoop, gather, sleep, timeout};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(lp: &EventLoop, name: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringloop-fs-{}-{}-{}-{}",
            std::process::id(),
            lp.driver_kind(),
            name,
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

#[ringloop::test]
fn writes_and_reads_at_offsets_with_a_hole_and_eof(lp: &EventLoop) {
    let dir = TempDir::new(lp, "offsets");
    let path = dir.join("f");
    lp.run_until_complete(async move {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .open(&path)
            .await
            .unwrap();
        let (res, _) = file.write_at(b"hello".to_vec(), 0).await;
        assert_eq!(res.unwrap(), 5);
        // Past the end: bytes 5..100 become a hole.
        let (res, _) = file.write_all_at(&b"world"[..], 100).await;
        res.unwrap();
        assert_eq!(file.metadata().await.unwrap().len(), 105);

        let (res, buf) = file.read_at(Vec::with_capacity(5), 0).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(buf, b"hello");
        let (res, hole) = file.read_exact_at(vec![0xAAu8; 95], 5).await;
        res.unwrap();
        assert!(hole.iter().all(|&b| b == 0), "a hole reads as zeros");
        let (res, buf) = file.read_at(Vec::with_capacity(64), 100).await;
        assert_eq!(res.unwrap(), 5, "a read crossing EOF is short");
        assert_eq!(buf, b"world");
        let (res, buf) = file.read_at(Vec::with_capacity(64), 105).await;
        assert_eq!(res.unwrap(), 0, "read at EOF");
        assert!(buf.is_empty());
        let (res, _) = file.read_at(Vec::with_capacity(64), 1 << 40).await;
        assert_eq!(res.unwrap(), 0, "read far past EOF");
        let (res, _) = file.read_at(Vec::new(), 0).await;
        assert_eq!(res.unwrap(), 0, "zero-capacity buffer");

        // A read into a slice fills that window only.
        let mut buf = b"XXhello".to_vec();
        buf.reserve(8);
        let (res, slice) = file.read_at(buf.slice(2..7), 100).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(slice.into_inner(), b"XXworld");

        // read_exact past the end: UnexpectedEof, the bytes read kept.
        let (res, buf) = file.read_exact_at(Vec::with_capacity(10), 100).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        assert_eq!(buf, b"world");

        // read_to_end reads from offset 0, whatever was read before.
        let (res, all) = file.read_to_end(b"prefix:".to_vec()).await;
        assert_eq!(res.unwrap(), 105);
        assert_eq!(&all[..12], b"prefix:hello");
        assert_eq!(&all[all.len() - 5..], b"world");
        let (res, tail) = file.read_to_end_at(Vec::new(), 100).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(tail, b"world");

        // Offsets the kernel cannot take are refused up front.
        let (res, _) = file.read_at(Vec::with_capacity(4), u64::MAX).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::InvalidInput);
        let (res, _) = file.write_at(b"x".to_vec(), u64::MAX).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::InvalidInput);
        file.close().await.unwrap();

        // The bytes std sees are the same.
        let std_bytes = std::fs::read(&path).unwrap();
        assert_eq!(std_bytes.len(), 105);
        assert_eq!(&std_bytes[..5], b"hello");
    })
    .unwrap();
}

#[ringloop::test]
fn fs_read_of_a_10_mib_file_equals_its_content(lp: &EventLoop) {
    let dir = TempDir::new(lp, "big");
    let data = pattern(10 * 1024 * 1024 + 17);
    let by_std = dir.join("std");
    std::fs::write(&by_std, &data).unwrap();
    let ours = dir.join("ours");
    let expect = data.clone();
    lp.run_until_complete(async move {
        let got = fs::read(&by_std).await.unwrap();
        assert!(got == expect, "fs::read differs from what std wrote");
        fs::write(&ours, data).await.unwrap();
        let back = fs::read(&ours).await.unwrap();
        assert!(back == expect, "fs::read differs from what fs::write wrote");
        assert!(
            std::fs::read(&ours).unwrap() == expect,
            "std reads what fs::write wrote"
        );
        // A Vec::new() (no size hint) grows to the whole file too.
        let file = File::open(&ours).await.unwrap();
        let (res, all) = file.read_to_end(Vec::new()).await;
        assert_eq!(res.unwrap(), expect.len());
        assert!(all == expect);
        // A file whose size statx reports as 0 but which has content.
        let status = fs::read("/proc/self/status").await.unwrap();
        assert!(status.starts_with(b"Name:"), "{}", String::from_utf8_lossy(&status));
        // Empty files.
        fs::write(&ours, Vec::new()).await.unwrap();
        assert!(fs::read(&ours).await.unwrap().is_empty());
        fs::write(&ours, "text").await.unwrap();
        assert_eq!(fs::read_to_string(&ours).await.unwrap(), "text");
        fs::write(&ours, &b"\xff\xfe"[..]).await.unwrap();
        assert_eq!(
            fs::read_to_string(&ours).await.unwrap_err().kind(),
            ErrorKind::InvalidData
        );
    })
    .unwrap();
}

#[ringloop::test]
fn open_errors_and_options_match_std(lp: &EventLoop) {
    let dir = TempDir::new(lp, "open");
    let d = dir.0.clone();
    lp.run_until_complete(async move {
        let missing = d.join("missing");
        assert_eq!(File::open(&missing).await.unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(
            File::open(d.join("no/such/dir/file")).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let path = d.join("f");
        let f = File::create_new(&path).await.unwrap();
        drop(f);
        assert_eq!(
            File::create_new(&path).await.unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::AlreadyExists
        );
        // Invalid combinations, as std rejects them.
        // (read, write, append, truncate, create)
        for (r, w, a, t, c) in [
            (false, false, false, false, false),
            (true, false, false, true, false),
            (true, false, false, false, true),
            (false, false, true, true, false),
        ] {
            let ours = OpenOptions::new()
                .read(r)
                .write(w)
                .append(a)
                .truncate(t)
                .create(c)
                .clone();
            let err = ours.open(&path).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{ours:?}: {err}");
            let std_err = std::fs::OpenOptions::new()
                .read(r)
                .write(w)
                .append(a)
                .truncate(t)
                .create(c)
                .open(&path)
                .unwrap_err();
            assert_eq!(std_err.kind(), ErrorKind::InvalidInput, "std agrees");
        }
        assert_eq!(
            File::open("bad\0path").await.unwrap_err().kind(),
            ErrorKind::InvalidInput
        );

        // Writing through a read-only file fails (EBADF), no panic.
        let ro = File::open(&path).await.unwrap();
        let (res, buf) = ro.write_at(b"nope".to_vec(), 0).await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EBADF));
        assert_eq!(buf, b"nope", "the buffer comes back with the error");
        assert!(ro.set_len(0).await.is_err());

        // create truncates; append appends whatever the offset.
        fs::write(&path, "0123456789").await.unwrap();
        let f = File::create(&path).await.unwrap();
        assert_eq!(f.metadata().await.unwrap().len(), 0);
        f.close().await.unwrap();
        fs::write(&path, "abc").await.unwrap();
        let f = OpenOptions::new().append(true).open(&path).await.unwrap();
        let (res, _) = f.write_all_at(&b"def"[..], 0).await;
        res.unwrap();
        drop(f);
        assert_eq!(fs::read(&path).await.unwrap(), b"abcdef");

        // A directory opens read-only, and reads fail with EISDIR.
        let dirf = File::open(&d).await.unwrap();
        assert!(dirf.metadata().await.unwrap().is_dir());
        let (res, _) = dirf.read_at(Vec::with_capacity(8), 0).await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EISDIR));

        // mode applies to created files (0o640 survives any usual umask).
        let p = d.join("moded");
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o640)
            .open(&p)
            .await
            .unwrap();
        let m = f.metadata().await.unwrap();
        assert_eq!(m.mode() & 0o777, 0o640 & !current_umask());
    })
    .unwrap();
}

#[ringloop::test]
fn remove_rename_and_create_dir_behave_and_fail_like_std(lp: &EventLoop) {
    let dir = TempDir::new(lp, "dirs");
    let d = dir.0.clone();
    lp.run_until_complete(async move {
        let a = d.join("a");
        let b = d.join("b");
        assert_eq!(fs::remove_file(&a).await.unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(fs::rename(&a, &b).await.unwrap_err().kind(), ErrorKind::NotFound);

        fs::write(&a, "A").await.unwrap();
        fs::write(&b, "B").await.unwrap();
        fs::rename(&a, &b).await.unwrap();
        assert!(!a.exists());
        assert_eq!(std::fs::read(&b).unwrap(), b"A", "rename replaces the target");
        fs::remove_file(&b).await.unwrap();
        assert!(!b.exists());

        let sub = d.join("sub");
        fs::create_dir(&sub).await.unwrap();
        assert!(sub.is_dir());
        assert_eq!(fs::create_dir(&sub).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
        assert_eq!(
            fs::create_dir(d.join("x/y")).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        fs::write(sub.join("f"), "f").await.unwrap();
        assert_eq!(
            fs::remove_dir(&sub).await.unwrap_err().kind(),
            ErrorKind::DirectoryNotEmpty
        );
        assert_eq!(fs::remove_file(&sub).await.unwrap_err().kind(), ErrorKind::IsADirectory);
        assert_eq!(
            fs::remove_dir(sub.join("f")).await.unwrap_err().kind(),
            ErrorKind::NotADirectory
        );
        fs::remove_file(sub.join("f")).await.unwrap();
        fs::remove_dir(&sub).await.unwrap();
        assert!(!sub.exists());
        assert_eq!(fs::remove_dir(&sub).await.unwrap_err().kind(), ErrorKind::NotFound);

        // A directory renamed, then created again.
        fs::create_dir(&sub).await.unwrap();
        fs::rename(&sub, d.join("moved")).await.unwrap();
        assert!(d.join("moved").is_dir() && !sub.exists());

        let deep = d.join("p/q/r/s");
        fs::create_dir_all(&deep).await.unwrap();
        assert!(deep.is_dir());
        fs::create_dir_all(&deep).await.unwrap();
        fs::create_dir_all(d.join("p/q")).await.unwrap();
        fs::write(d.join("p/file"), "").await.unwrap();
        assert!(fs::create_dir_all(d.join("p/file/below")).await.is_err());
        assert_eq!(
            fs::create_dir_all(d.join("p/file")).await.unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
    })
    .unwrap();
}

#[ringloop::test]
fn metadata_reports_size_kind_permissions_and_times_like_std(lp: &EventLoop) {
    let dir = TempDir::new(lp, "meta");
    let d = dir.0.clone();
    lp.run_until_complete(async move {
        let p = d.join("f");
        fs::write(&p, vec![7u8; 4321]).await.unwrap();
        let m = fs::metadata(&p).await.unwrap();
        let s = std::fs::metadata(&p).unwrap();
        assert_eq!(m.len(), 4321);
        assert!(m.is_file() && !m.is_dir() && !m.is_symlink());
        assert!(!m.is_empty());
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(m.mode(), s.mode());
        assert_eq!(m.permissions().mode(), s.permissions().mode());
        assert_eq!(m.permissions().readonly(), s.permissions().readonly());
        assert_eq!(m.ino(), s.ino());
        assert_eq!(m.nlink(), 1);
        assert_eq!((m.uid(), m.gid()), (s.uid(), s.gid()));
        assert_eq!(m.modified().unwrap(), s.modified().unwrap());
        assert_eq!(m.accessed().unwrap(), s.accessed().unwrap());
        let age = SystemTime::now()
            .duration_since(m.modified().unwrap())
            .unwrap_or_default();
        assert!(age < Duration::from_secs(3600), "mtime is recent: {age:?}");
        if let Ok(created) = s.created() {
            assert_eq!(m.created().unwrap(), created);
        }

        let file = File::open(&p).await.unwrap();
        let fm = file.metadata().await.unwrap();
        assert_eq!(fm, m, "metadata of the fd equals metadata of the path");

        let dm = fs::metadata(&d).await.unwrap();
        assert!(dm.is_dir() && !dm.is_file());
        assert!(dm.file_type().is_dir());

        let link = d.join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(
            fs::metadata(&link).await.unwrap().is_file(),
            "metadata follows symlinks"
        );
        let lm = fs::symlink_metadata(&link).await.unwrap();
        assert!(lm.is_symlink() && !lm.is_file());

        assert_eq!(
            fs::metadata(d.join("missing")).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            fs::metadata(p.join("below-a-file")).await.unwrap_err().kind(),
            ErrorKind::NotADirectory
        );
    })
    .unwrap();
}

#[ringloop::test]
fn sync_set_len_and_close_work(lp: &EventLoop) {
    let dir = TempDir::new(lp, "sync");
    let p = dir.join("f");
    lp.run_until_complete(async move {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .open(&p)
            .await
            .unwrap();
        let (res, _) = file.write_all_at(pattern(100_000), 0).await;
        res.unwrap();
        file.sync_all().await.unwrap();
        file.sync_data().await.unwrap();
        file.set_len(10).await.unwrap();
        assert_eq!(file.metadata().await.unwrap().len(), 10);
        file.set_len(5000).await.unwrap();
        let (res, buf) = file.read_exact_at(Vec::with_capacity(4990), 10).await;
        res.unwrap();
        assert!(buf.iter().all(|&b| b == 0), "extension reads as zeros");
        assert_eq!(
            file.set_len(u64::MAX).await.unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
        assert!(raw >= 0);
        file.close().await.unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 5000);
    })
    .unwrap();
}

#[ringloop::test]
fn concurrent_reads_of_one_file_all_get_their_own_range(lp: &EventLoop) {
    let dir = TempDir::new(lp, "concurrent");
    let p = dir.join("f");
    let data = pattern(64 * 1024);
    std::fs::write(&p, &data).unwrap();
    lp.run_until_complete(async move {
        let file = std::rc::Rc::new(File::open(&p).await.unwrap());
        let reads = (0..64u64).map(|i| {
            let file = file.clone();
            async move {
                let (res, buf) = file.read_exact_at(Vec::with_capacity(1024), i * 1024).await;
                res.unwrap();
                buf
            }
        });
        let chunks = gather(reads).await.unwrap();
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(&chunk[..], &data[i * 1024..(i + 1) * 1024], "chunk {i}");
        }
    })
    .unwrap();
}

#[ringloop::test]
fn a_timed_out_read_gives_nothing_and_the_file_stays_usable(lp: &EventLoop) {
    let dir = TempDir::new(lp, "timeout");
    let p = dir.join("f");
    std::fs::write(&p, pattern(1 << 20)).unwrap();
    lp.run_until_complete(async move {
        let file = File::open(&p).await.unwrap();
        for i in 0..50u64 {
            let d = Duration::from_micros(i * 13 % 300);
            let _ = timeout(d, file.read_at(Vec::with_capacity(1 << 20), 0)).await;
        }
        let (res, buf) = file.read_at(Vec::with_capacity(16), 0).await;
        assert_eq!(res.unwrap(), 16);
        assert_eq!(buf, pattern(16));
    })
    .unwrap();
}

#[ringloop::test]
fn dropped_in_flight_opens_and_reads_do_not_leak_fds(lp: &EventLoop) {
    // Counted in a child process: other tests in this binary open fds
    // concurrently, which would make /proc/self/fd counts meaningless.
    let stdout = run_child(lp, "fd_leak_child", &[]);
    assert!(stdout.contains("FD_LEAK_CHILD_OK"), "child did not run:\n{stdout}");
}

fn current_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .unwrap_or(0o022)
}

/// Run by `dropped_in_flight_opens_and_reads_do_not_leak_fds` in a child
/// process, alone, on the parent's backend.
#[test]
#[ignore = "helper: run in a child process by dropped_in_flight_opens_and_reads_do_not_leak_fds"]
fn fd_leak_child() {
    let Some(lp) = child_loop(EventLoop::builder()) else {
        return;
    };
    let dir = TempDir::new(&lp, "leak");
    let src = dir.join("src");
    std::fs::write(&src, pattern(256 * 1024)).unwrap();
    let d = dir.0.clone();
    lp.run_until_complete(async move {
        // Warm up: the blocking pool's threads and the loop's lazily
        // created state exist before the baseline is taken.
        let f = File::open(&src).await.unwrap();
        let (res, _) = f.read_at(Vec::with_capacity(16), 0).await;
        res.unwrap();
        f.close().await.unwrap();
        let before = open_fds();

        for i in 0..300u64 {
            // An open dropped right after submission.
            let _ = poll!(Box::pin(File::open(&src)));
            // A create (O_CREAT) dropped after submission.
            let _ = poll!(Box::pin(File::create(d.join(format!("c{i}")))));
            // Opens racing a random small deadline.
            let _ = timeout(Duration::from_micros(i * 7 % 250), File::open(&src)).await;
            // A read in flight when both it and its file are dropped.
            if let Ok(file) = File::open(&src).await {
                let _ = poll!(Box::pin(file.read_at(Vec::with_capacity(64 * 1024), (i % 4) * 65536)));
                let _ = timeout(Duration::from_micros(i % 50), file.metadata()).await;
                drop(file);
            }
        }

        // Orphaned operations finish (and close their fds) on their own.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = open_fds();
            if now == before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "fd leak: {before} fds before, {now} after the dropped operations"
            );
            sleep(Duration::from_millis(10)).await;
        }
        // The loop still serves file operations.
        let data = fs::read(&src).await.unwrap();
        assert_eq!(data.len(), 256 * 1024);
        assert_eq!(open_fds(), before);
    })
    .unwrap();
    println!("FD_LEAK_CHILD_OK");
}
