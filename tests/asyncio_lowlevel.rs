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
