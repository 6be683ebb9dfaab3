//! asyncio's loop-level helpers on both backends: `getaddrinfo` /
//! `getnameinfo` on the blocking pool (`ringloop::dns`) and
//! `create_subprocess_shell` (`ringloop::process`).

mod common;

use std::io::ErrorKind;
use std::net::SocketAddr;

use ringloop::dns::{NI_NUMERICHOST, NI_NUMERICSERV, getaddrinfo, getnameinfo};
use ringloop::process::{Stdio, create_subprocess_shell, shell};

#[ringloop::test]
async fn getaddrinfo_resolves_literals_and_localhost() {
    let v4 = getaddrinfo("127.0.0.1", 8080).await.unwrap();
    assert_eq!(v4, ["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]);
    let v6 = getaddrinfo("::1", 9).await.unwrap();
    assert_eq!(v6, ["[::1]:9".parse::<SocketAddr>().unwrap()]);
    let local = getaddrinfo("localhost", 1).await.unwrap();
    assert!(!local.is_empty());
    assert!(local.iter().all(|a| a.ip().is_loopback() && a.port() == 1), "{local:?}");
}

#[ringloop::test]
async fn getaddrinfo_reports_bad_hosts_as_errors() {
    // `.invalid` never resolves (RFC 2606).
    assert!(getaddrinfo("no-such-host.invalid", 80).await.is_err());
    let e = getaddrinfo("bad\0host", 80).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[ringloop::test]
async fn getnameinfo_gives_numeric_and_named_forms() {
    let addr: SocketAddr = "127.0.0.1:22".parse().unwrap();
    let (h, s) = getnameinfo(addr, NI_NUMERICHOST | NI_NUMERICSERV).await.unwrap();
    assert_eq!((h.as_str(), s.as_str()), ("127.0.0.1", "22"));
    let (h, _) = getnameinfo("[::1]:5".parse().unwrap(), NI_NUMERICHOST).await.unwrap();
    assert_eq!(h, "::1");
    // Names: 127.0.0.1 has one (from /etc/hosts), port 22 is "ssh" or "22".
    let (h, s) = getnameinfo(addr, 0).await.unwrap();
    assert!(!h.is_empty() && !s.is_empty());
    // Unknown flag bits are the resolver's EAI_BADFLAGS, an InvalidInput error.
    let e = getnameinfo(addr, -1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[ringloop::test]
async fn create_subprocess_shell_runs_a_command_line() {
    let mut child = create_subprocess_shell(
        "read x; echo \"got $x\"; echo err >&2; exit 7",
        Stdio::piped(),
        Stdio::piped(),
        Stdio::piped(),
    )
    .unwrap();
    assert!(child.stdin.is_some());
    let out = child.communicate(b"hi\n".to_vec()).await.unwrap();
    assert_eq!(out.stdout, b"got hi\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.status.code(), Some(7));
    let out = shell("echo $((6 * 7)) | tr 4 X").output().await.unwrap();
    assert_eq!(out.stdout, b"X2\n");
}

#[ringloop::test]
async fn add_reader_is_level_triggered_until_removed() {
    use std::io::{Read, Write};
    let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let calls = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let c = calls.clone();
    let watcher = ringloop::watch::add_reader(&b, move || c.set(c.get() + 1)).unwrap();
    for _ in 0..5 {
        ringloop::yield_now().await;
    }
    assert_eq!(calls.get(), 0, "not readable yet");
    a.write_all(b"x").unwrap();
    // The callback does not read: it runs again while the byte is there.
    let mut spins = 0;
    while calls.get() < 3 {
        ringloop::sleep(std::time::Duration::from_millis(1)).await;
        spins += 1;
        assert!(spins < 2000, "callback ran {} times", calls.get());
    }
    assert!(watcher.is_active());
    // Drained: the calls stop.
    let mut buf = [0u8; 8];
    assert_eq!((&b).read(&mut buf).unwrap(), 1);
    ringloop::sleep(std::time::Duration::from_millis(5)).await;
    let settled = calls.get();
    ringloop::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(calls.get(), settled, "no calls once drained");
    assert!(watcher.remove());
    a.write_all(b"y").unwrap();
    ringloop::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(calls.get(), settled, "no calls after remove");
}

#[ringloop::test]
async fn add_writer_runs_while_writable_and_drop_removes_it() {
    let (_a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let calls = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let c = calls.clone();
    let watcher = ringloop::watch::add_writer(&b, move || c.set(c.get() + 1)).unwrap();
    while calls.get() < 2 {
        ringloop::yield_now().await;
    }
    drop(watcher);
    let n = calls.get();
    ringloop::sleep(std::time::Duration::from_millis(10)).await;
    assert_eq!(calls.get(), n, "no calls after the watcher is dropped");
}

#[ringloop::test]
fn add_signal_handler_calls_back_per_signal(lp: &ringloop::EventLoop) {
    // Signals are process-wide and both variants run at once: one signal each.
    let (kind, signum) = match lp.driver_kind() {
        ringloop::DriverKind::Uring => (ringloop::signal::SignalKind::user_defined1(), libc::SIGUSR1),
        _ => (ringloop::signal::SignalKind::user_defined2(), libc::SIGUSR2),
    };
    lp.run_until_complete(async move {
        let calls = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let c = calls.clone();
        let h = ringloop::watch::add_signal_handler(kind, move || c.set(c.get() + 1)).unwrap();
        // SAFETY: sends a signal to this process, whose handler ringloop installed above.
        assert_eq!(unsafe { libc::kill(libc::getpid(), signum) }, 0);
        while calls.get() < 1 {
            ringloop::sleep(std::time::Duration::from_millis(1)).await;
        }
        ringloop::sleep(std::time::Duration::from_millis(10)).await;
        assert_eq!(calls.get(), 1, "one signal, one call");
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(libc::getpid(), signum) }, 0);
        while calls.get() < 2 {
            ringloop::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(h.remove());
    })
    .unwrap();
}
