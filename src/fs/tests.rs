//! The blocking-pool path an io_uring loop takes when the kernel lacks an
//! opcode (forced here with `FORCE_POOL`, since a test kernel may have them
//! all): the same results, with the fd duplicated for each job.

use std::io::ErrorKind;

use super::ops::{FORCE_POOL, FileFd};
use super::*;
use crate::{DriverChoice, DriverKind, EventLoop};

fn uring_loop() -> Option<EventLoop> {
    match EventLoop::builder().driver(DriverChoice::Uring).build() {
        Ok(lp) => Some(lp),
        Err(e) => {
            let required = std::env::var("RINGLOOP_REQUIRE_URING").is_ok_and(|v| v == "1");
            assert!(!required, "RINGLOOP_REQUIRE_URING=1 but io_uring is unavailable: {e}");
            eprintln!("SKIP: io_uring unavailable here: {e}");
            None
        }
    }
}

#[test]
fn every_file_operation_works_through_the_pool_on_an_io_uring_loop() {
    let Some(lp) = uring_loop() else { return };
    assert_eq!(lp.driver_kind(), DriverKind::Uring);
    let dir = std::env::temp_dir().join(format!("ringloop-fs-unit-pool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.clone();
    lp.run_until_complete(async move {
        FORCE_POOL.with(|f| f.set(true));
        let sub = d.join("sub");
        create_dir(&sub).await.unwrap();
        assert_eq!(create_dir(&sub).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
        let p = sub.join("f");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p)
            .await
            .unwrap();
        assert!(matches!(file.fd, FileFd::Ring(_)), "an io_uring loop keeps a SharedFd");
        let (res, _) = file.write_all_at(b"pooled".to_vec(), 3).await;
        res.unwrap();
        file.sync_all().await.unwrap();
        file.sync_data().await.unwrap();
        let m = file.metadata().await.unwrap();
        assert!(m.is_file());
        assert_eq!(m.len(), 9);
        let (res, buf) = file.read_at(Vec::with_capacity(16), 0).await;
        assert_eq!(res.unwrap(), 9);
        assert_eq!(buf, b"\0\0\0pooled");
        file.set_len(4).await.unwrap();
        assert_eq!(metadata(&p).await.unwrap().len(), 4);
        file.close().await.unwrap();

        let q = sub.join("g");
        rename(&p, &q).await.unwrap();
        assert_eq!(read(&q).await.unwrap(), b"\0\0\0p");
        assert_eq!(File::open(&p).await.unwrap_err().kind(), ErrorKind::NotFound);
        assert!(symlink_metadata(&sub).await.unwrap().is_dir());
        remove_file(&q).await.unwrap();
        remove_dir(&sub).await.unwrap();
        assert_eq!(metadata(&sub).await.unwrap_err().kind(), ErrorKind::NotFound);

        FORCE_POOL.with(|f| f.set(false));
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
