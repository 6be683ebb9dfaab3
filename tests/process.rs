//! Child processes on both backends: pipes, exit statuses, kill, errors,
//! concurrency and reaping (no zombies).

mod common;

use ringloop::EventLoop;
use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use ringloop::process::{Command, Stdio};
use ringloop::{gather, sleep, timeout};

/// Upper bound for anything that should be quick, generous for a loaded
/// 2-core machine; hitting it means a hang, not slowness.
const PATIENCE: Duration = Duration::from_secs(20);

/// Whether `pid` is still a process (or an unreaped zombie) of ours. Uses
/// /proc so it never reaps anything itself.
fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// `waitpid(pid, WNOHANG)` says ECHILD: `pid` is no child of ours any more
/// (it was reaped).
fn is_reaped(pid: u32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid with a valid out-pointer.
    let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
}

/// Waits (running the loop) until `/proc/<pid>` is gone: the child was
/// reaped by someone other than the test.
async fn until_gone(pid: u32) {
    timeout(PATIENCE, async {
        while exists(pid) {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("pid {pid} still exists (a zombie?)"));
}

#[ringloop::test]
fn stdout_of_echo_is_captured(lp: &EventLoop) {
    let out = lp
        .run_until_complete(async { Command::new("echo").arg("hello").output().await.unwrap() })
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.stderr, b"");
}

#[ringloop::test]
fn stdin_written_to_cat_comes_back_and_eof_follows_once_stdin_is_dropped(lp: &EventLoop) {
    lp.run_until_complete(async {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (res, _) = stdin.write_all(b"ping ".as_slice()).await;
        res.unwrap();
        // cat echoes what it got before stdin is closed.
        let (res, got) = stdout.read(Vec::with_capacity(64)).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(got, b"ping ");
        let (res, _) = stdin.write_all(b"pong".to_vec()).await;
        res.unwrap();
        drop(stdin);
        let (res, rest) = stdout.read_to_end(Vec::new()).await;
        res.unwrap();
        assert_eq!(rest, b"pong");
        let status = timeout(PATIENCE, child.wait()).await.unwrap().unwrap();
        assert!(status.success());
    })
    .unwrap();
}

#[ringloop::test]
fn stderr_is_captured_apart_from_stdout(lp: &EventLoop) {
    let out = lp
        .run_until_complete(async {
            Command::new("sh")
                .args(["-c", "echo out; echo err >&2; echo more >&2"])
                .output()
                .await
                .unwrap()
        })
        .unwrap();
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\nmore\n");
}

#[ringloop::test]
fn exit_codes_are_reported(lp: &EventLoop) {
    lp.run_until_complete(async {
        let status = Command::new("sh").args(["-c", "exit 3"]).status().await.unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(!status.success());
        let status = Command::new("true").status().await.unwrap();
        assert_eq!(status.code(), Some(0));
        let out = Command::new("sh")
            .args(["-c", "echo partial; exit 42"])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(42));
        assert_eq!(out.stdout, b"partial\n");
    })
    .unwrap();
}

#[ringloop::test]
fn a_killed_child_reports_sigkill_and_wait_returns_at_once(lp: &EventLoop) {
    lp.run_until_complete(async {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id().unwrap();
        assert_eq!(child.try_wait().unwrap(), None);
        child.start_kill().unwrap();
        let status = timeout(PATIENCE, child.wait())
            .await
            .expect("wait hung after kill")
            .unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(status.code(), None);
        // Reaped: no pid any more, and killing again is harmless.
        assert_eq!(child.id(), None);
        assert!(is_reaped(pid));
        child.start_kill().unwrap();
        assert_eq!(child.wait().await.unwrap().signal(), Some(libc::SIGKILL));
    })
    .unwrap();
}

#[ringloop::test]
fn kill_sends_sigkill_and_waits(lp: &EventLoop) {
    lp.run_until_complete(async {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        timeout(PATIENCE, child.kill()).await.unwrap().unwrap();
        assert_eq!(child.try_wait().unwrap().unwrap().signal(), Some(libc::SIGKILL));
    })
    .unwrap();
}

#[ringloop::test]
fn other_signals_reach_the_child(lp: &EventLoop) {
    lp.run_until_complete(async {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        child.send_signal(libc::SIGTERM).unwrap();
        let status = timeout(PATIENCE, child.wait()).await.unwrap().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    })
    .unwrap();
}

#[ringloop::test]
fn spawning_a_missing_program_is_not_found(lp: &EventLoop) {
    lp.run_until_complete(async {
        let err = Command::new("/nonexistent/ringloop-no-such-program")
            .spawn()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        let err = Command::new("ringloop-no-such-program-in-path")
            .output()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        // A directory is no program.
        let err = Command::new("/").spawn().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    })
    .unwrap();
}

#[ringloop::test]
fn ten_children_run_at_the_same_time(lp: &EventLoop) {
    lp.run_until_complete(async {
        // Every child waits for a line on stdin: all ten are alive at
        // once before any of them gets its input.
        let mut children: Vec<_> = (0..10)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "read line; echo \"got $line\""])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in &mut children {
            assert_eq!(child.try_wait().unwrap(), None);
        }
        let pids: Vec<u32> = children.iter().map(|c| c.id().unwrap()).collect();
        let jobs = children.into_iter().enumerate().map(|(i, mut child)| async move {
            let (res, _) = child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{i}\n").into_bytes())
                .await;
            res.unwrap();
            let out = timeout(PATIENCE, child.output()).await.unwrap().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap()
        });
        let outputs = gather(jobs).await.unwrap();
        let expected: Vec<String> = (0..10).map(|i| format!("got {i}\n")).collect();
        assert_eq!(outputs, expected);
        for pid in pids {
            assert!(is_reaped(pid), "pid {pid} was not reaped");
        }
    })
    .unwrap();
}

#[ringloop::test]
fn waited_children_leave_no_zombies(lp: &EventLoop) {
    lp.run_until_complete(async {
        let mut pids = Vec::new();
        for code in 0..5 {
            let mut child = Command::new("sh")
                .args(["-c", &format!("exit {code}")])
                .spawn()
                .unwrap();
            pids.push(child.id().unwrap());
            assert_eq!(child.wait().await.unwrap().code(), Some(code));
        }
        for pid in pids {
            assert!(is_reaped(pid), "pid {pid} is still our child (a zombie)");
        }
    })
    .unwrap();
}

#[ringloop::test]
fn a_dropped_child_is_reaped_without_being_waited_for(lp: &EventLoop) {
    lp.run_until_complete(async {
        let child = Command::new("sh").args(["-c", "sleep 0.2"]).spawn().unwrap();
        let pid = child.id().unwrap();
        drop(child);
        // Not killed: it runs to its end, then the loop reaps it.
        until_gone(pid).await;
    })
    .unwrap();
}

#[ringloop::test]
fn a_dropped_child_with_kill_on_drop_is_killed_and_reaped(lp: &EventLoop) {
    lp.run_until_complete(async {
        let child = Command::new("sleep").arg("30").kill_on_drop(true).spawn().unwrap();
        let pid = child.id().unwrap();
        drop(child);
        until_gone(pid).await;
    })
    .unwrap();
}

#[ringloop::test]
fn a_child_owned_by_a_cancelled_task_is_still_reaped(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (tx, rx) = std::sync::mpsc::channel();
        let owner = ringloop::spawn(async move {
            let mut child = Command::new("sleep").arg("30").kill_on_drop(true).spawn().unwrap();
            tx.send(child.id().unwrap()).unwrap();
            child.wait().await.unwrap()
        });
        let pid = loop {
            if let Ok(pid) = rx.try_recv() {
                break pid;
            }
            sleep(Duration::from_millis(1)).await;
        };
        // Dropping the task's future drops (kills) the child mid-wait.
        assert!(owner.cancel());
        assert!(owner.await.unwrap_err().is_cancelled());
        until_gone(pid).await;
    })
    .unwrap();
}

#[ringloop::test]
fn a_cancelled_wait_loses_nothing(lp: &EventLoop) {
    lp.run_until_complete(async {
        let mut child = Command::new("sh")
            .args(["-c", "read x; exit 7"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        // The child waits for its input: this wait times out.
        assert!(timeout(Duration::from_millis(20), child.wait()).await.is_err());
        assert_eq!(child.try_wait().unwrap(), None);
        let (res, _) = stdin.write_all(b"go\n".as_slice()).await;
        res.unwrap();
        let status = timeout(PATIENCE, child.wait()).await.unwrap().unwrap();
        assert_eq!(status.code(), Some(7));
    })
    .unwrap();
}

#[ringloop::test]
fn try_wait_says_none_until_the_child_exits(lp: &EventLoop) {
    lp.run_until_complete(async {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        assert_eq!(child.try_wait().unwrap(), None);
        drop(child.stdin.take()); // cat exits at EOF
        let status = timeout(PATIENCE, async {
            loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break s;
                }
                sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        assert!(status.success());
        assert_eq!(child.try_wait().unwrap(), Some(status));
        assert_eq!(child.wait().await.unwrap(), status);
    })
    .unwrap();
}

#[ringloop::test]
fn writing_to_a_child_that_exited_is_broken_pipe(lp: &EventLoop) {
    lp.run_until_complete(async {
        let mut child = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        child.wait().await.unwrap();
        let (res, _) = stdin.write_all(vec![b'x'; 1 << 20]).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::BrokenPipe);
    })
    .unwrap();
}

#[ringloop::test]
fn one_childs_stdout_feeds_anothers_stdin(lp: &EventLoop) {
    lp.run_until_complete(async {
        let mut first = Command::new("echo")
            .arg("hello pipeline")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pipe = Stdio::try_from(first.stdout.take().unwrap()).unwrap();
        let out = Command::new("tr")
            .args(["a-z", "A-Z"])
            .stdin(pipe)
            .output()
            .await
            .unwrap();
        assert_eq!(out.stdout, b"HELLO PIPELINE\n");
        assert!(first.wait().await.unwrap().success());
    })
    .unwrap();
}

#[ringloop::test]
fn communicate_feeds_input_and_collects_both_streams(lp: &EventLoop) {
    lp.run_until_complete(async {
        let mut child = Command::new("sh")
            .args(["-c", "cat; echo done >&2"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Larger than a pipe buffer both ways: needs concurrent I/O.
        let input: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let out = timeout(PATIENCE, child.communicate(input.clone()))
            .await
            .unwrap()
            .unwrap();
        assert!(out.status.success());
        assert!(out.stdout == input, "stdout differs ({} bytes)", out.stdout.len());
        assert_eq!(out.stderr, b"done\n");
    })
    .unwrap();
}

#[ringloop::test]
fn large_output_is_read_while_waiting(lp: &EventLoop) {
    let out = lp
        .run_until_complete(async {
            timeout(
                PATIENCE,
                Command::new("head").args(["-c", "1000000", "/dev/zero"]).output(),
            )
            .await
            .unwrap()
            .unwrap()
        })
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 1_000_000);
}

#[ringloop::test]
fn environment_and_working_directory_are_applied(lp: &EventLoop) {
    let out = lp
        .run_until_complete(async {
            Command::new("/bin/sh")
                .args(["-c", "echo \"$FOO|$HOME\"; pwd"])
                .env_clear()
                .env("FOO", "bar")
                .current_dir("/")
                .output()
                .await
                .unwrap()
        })
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "bar|\n/\n");
}

#[ringloop::test]
fn a_null_stdin_reads_as_empty(lp: &EventLoop) {
    let out = lp
        .run_until_complete(async { Command::new("wc").arg("-c").output().await.unwrap() })
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "0");
}

#[test]
fn spawning_without_an_event_loop_is_an_error_and_starts_nothing() {
    let err = Command::new("true").spawn().unwrap_err();
    assert!(err.to_string().contains("no event loop"), "{err}");
}
