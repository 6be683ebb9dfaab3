//! Runs every tutorial port in `examples/` on both backends and checks what
//! it prints.
//!
//! The examples are built once (`cargo build --examples`), then every
//! (example, arguments, backend) run starts at the same time in its own
//! process, so the whole file takes about as long as the slowest example
//! (`wait_and_gather`, ~10 s). Each test then checks the outcome of its runs.
//!
//! Backends are picked with `RINGLOOP_DRIVER=uring|fallback`. With the
//! `fallback` feature only the fallback backend exists, so only it runs. If
//! io_uring cannot be set up here, the uring runs are skipped (said on
//! stderr) unless `RINGLOOP_REQUIRE_URING=1`, which makes every test fail.
//! The examples run with `RINGLOOP_DEBUG=1`, whose stderr line names the
//! backend the loop was built on; each run checks it is the requested one.

use std::collections::HashMap;
use std::io::Read;
use std::ops::RangeInclusive;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ringloop::{DriverChoice, EventLoop};

mod common;
use common::examples::build_examples;

/// Every run of the suite: example name and arguments.
const RUNS: &[(&str, &[&str])] = &[
    ("get_html", &[]),
    ("concurrent_get_html", &[]),
    ("concurrent_get_html", &["--blocking", "0.2"]),
    ("task_result", &[]),
    ("task_result", &["--create-task"]),
    ("done_callback", &[]),
    ("wait_and_gather", &[]),
    ("chain_coroutines", &[]),
    ("call_soon", &[]),
    ("call_later", &[]),
    ("call_soon_and_later", &[]),
    ("call_at", &[]),
    ("call_soon_threadsafe", &[]),
    // Pressing Ctrl+C is tested by tests/example_ctrl_c.rs.
    ("ctrl_c", &[]),
    ("pipeline", &[]),
    ("udp_echo", &[]),
    ("pipe_protocol", &[]),
    ("cores_echo", &["--self-test", "200"]),
    ("cores_http", &["--self-test", "100"]),
    ("cores_pingpong", &["--rounds", "200", "--quiet"]),
];

/// Examples run by their own test file instead (they need a server, paths
/// made at run time, or signals): name and file.
const TESTED_ELSEWHERE: &[(&str, &str)] = &[
    ("echo_server", "tests/example_echo.rs"),
    ("echo_client", "tests/example_echo.rs"),
    ("file_copy", "tests/example_file_copy.rs"),
    ("streams_echo_server", "tests/example_streams.rs"),
    ("streams_echo_client", "tests/example_streams.rs"),
    ("protocol_echo_server", "tests/example_streams.rs"),
    ("protocol_echo_client", "tests/example_streams.rs"),
    // Features `hyper` + `tls` (skipped without them).
    ("hyper_hello", "tests/example_hyper.rs"),
    ("hyper_client", "tests/example_hyper.rs"),
    ("https_hello", "tests/example_hyper.rs"),
];

/// A run that has not finished by then is killed and fails its test.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Elapsed-time line of the two-second programs.
const ABOUT_TWO_SECONDS: RangeInclusive<f64> = 1.95..=3.0;

struct Outcome {
    backend: &'static str,
    label: String,
    code: Option<i32>,
    timed_out: bool,
    wall: Duration,
    stdout: String,
    stderr: String,
}

struct Suite {
    backends: Vec<&'static str>,
    outcomes: HashMap<(String, &'static str), Outcome>,
}

fn label(name: &str, args: &[&str]) -> String {
    std::iter::once(name)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The backends to run, or an error when io_uring is required but missing.
fn backends() -> Result<Vec<&'static str>, String> {
    if cfg!(feature = "fallback") {
        eprintln!(
            "examples: built with the `fallback` feature, io_uring is unavailable: running the fallback backend only"
        );
        return Ok(vec!["fallback"]);
    }
    match EventLoop::builder().driver(DriverChoice::Uring).build() {
        Ok(_) => Ok(vec!["uring", "fallback"]),
        Err(e) if std::env::var("RINGLOOP_REQUIRE_URING").is_ok_and(|v| v == "1") => {
            Err(format!("RINGLOOP_REQUIRE_URING=1 but io_uring is unavailable: {e}"))
        }
        Err(e) => {
            eprintln!("SKIP [uring]: io_uring unavailable here ({e}): running the fallback backend only");
            Ok(vec!["fallback"])
        }
    }
}

fn run(dir: &Path, name: &str, args: &[&str], backend: &'static str) -> Outcome {
    let label = label(name, args);
    let start = Instant::now();
    let mut child = Command::new(dir.join(name))
        .args(args)
        .env("RINGLOOP_DRIVER", backend)
        .env("RINGLOOP_DEBUG", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start example `{label}`: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for an example") {
            break status;
        }
        if start.elapsed() > RUN_TIMEOUT {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("waiting for a killed example");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Outcome {
        backend,
        label,
        code: status.code(),
        timed_out,
        wall: start.elapsed(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn suite() -> &'static Suite {
    static SUITE: OnceLock<Result<Suite, String>> = OnceLock::new();
    let suite = SUITE.get_or_init(|| {
        let backends = backends()?;
        let dir = build_examples()?;
        let outcomes = std::thread::scope(|s| {
            let runs: Vec<_> = RUNS
                .iter()
                .flat_map(|&(name, args)| backends.iter().map(move |&b| (name, args, b)))
                .map(|(name, args, b)| s.spawn(|| run(&dir, name, args, b)))
                .collect();
            runs.into_iter()
                .map(|h| {
                    let o = h.join().expect("runner thread");
                    ((o.label.clone(), o.backend), o)
                })
                .collect()
        });
        Ok(Suite { backends, outcomes })
    });
    match suite {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// One expected stdout line.
enum Line {
    Is(&'static str),
    /// An elapsed time in seconds, within the range.
    Secs(RangeInclusive<f64>),
}

fn is(lines: &[&'static str]) -> Vec<Line> {
    lines.iter().map(|&l| Line::Is(l)).collect()
}

/// The runs of `name args` on every backend, each checked to have exited
/// successfully on the requested backend and printed `expected`.
fn check(name: &str, args: &[&str], expected: &[Line]) -> Vec<&'static Outcome> {
    let suite = suite();
    let label = label(name, args);
    suite
        .backends
        .iter()
        .map(|&backend| {
            let o = &suite.outcomes[&(label.clone(), backend)];
            let ctx = format!(
                "[{backend}] `{label}` (exit {:?}, {:?})\n--- stdout ---\n{}--- stderr ---\n{}",
                o.code, o.wall, o.stdout, o.stderr
            );
            assert!(!o.timed_out, "killed after {RUN_TIMEOUT:?}: {ctx}");
            assert_eq!(o.code, Some(0), "{ctx}");
            assert!(
                o.stderr.contains(&format!("event loop on the {backend} backend")),
                "not run on the requested backend: {ctx}"
            );
            let lines: Vec<&str> = o.stdout.lines().collect();
            assert_eq!(lines.len(), expected.len(), "wrong number of lines: {ctx}");
            for (i, (got, want)) in lines.iter().zip(expected).enumerate() {
                match want {
                    Line::Is(s) => assert_eq!(got, s, "line {}: {ctx}", i + 1),
                    Line::Secs(range) => {
                        let secs: f64 = got
                            .parse()
                            .unwrap_or_else(|e| panic!("line {}: {got:?} is not seconds ({e}): {ctx}", i + 1));
                        assert!(
                            range.contains(&secs),
                            "line {}: {secs} s not in {range:?}: {ctx}",
                            i + 1
                        );
                    }
                }
            }
            o
        })
        .collect()
}

#[test]
fn every_example_file_is_run_by_this_suite() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("examples/")
        .filter_map(|e| {
            let path = e.expect("dir entry").path();
            (path.extension()? == "rs").then(|| path.file_stem().expect("stem").to_string_lossy().into_owned())
        })
        .collect();
    files.sort();
    let mut covered: Vec<String> = RUNS
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(TESTED_ELSEWHERE.iter().map(|(n, _)| n.to_string()))
        .collect();
    for (name, file) in TESTED_ELSEWHERE {
        let test = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        assert!(test.exists(), "{name} is said to be tested by {file}, which is missing");
    }
    covered.sort();
    covered.dedup();
    assert_eq!(files, covered);
}

#[test]
fn one_coroutine_sleeps_two_seconds_under_run_until_complete() {
    let mut expected = is(&["start get url", "end get url"]);
    expected.push(Line::Secs(ABOUT_TWO_SECONDS));
    check("get_html", &[], &expected);
}

#[test]
fn ten_concurrent_coroutines_under_wait_take_two_seconds_not_twenty() {
    let mut expected: Vec<Line> = (0..10)
        .map(|_| Line::Is("start get url"))
        .chain((0..10).map(|_| Line::Is("end get url")))
        .collect();
    expected.push(Line::Secs(ABOUT_TWO_SECONDS));
    check("concurrent_get_html", &[], &expected);
}

#[test]
fn a_blocking_sleep_in_a_coroutine_makes_the_ten_run_one_after_another() {
    // Each coroutine blocks 0.2 s without yielding: every start is followed by
    // its own end, and the ten take 10 × 0.2 s instead of 0.2 s.
    let mut expected: Vec<Line> = (0..10)
        .flat_map(|_| [Line::Is("start get url"), Line::Is("end get url")])
        .collect();
    expected.push(Line::Secs(ABOUT_TWO_SECONDS));
    check("concurrent_get_html", &["--blocking", "0.2"], &expected);
}

#[test]
fn a_task_result_is_read_after_run_until_complete_with_ensure_future() {
    check("task_result", &[], &is(&["start get url", "紅燒肉"]));
}

#[test]
fn a_task_result_is_read_after_run_until_complete_with_create_task() {
    check("task_result", &["--create-task"], &is(&["start get url", "紅燒肉"]));
}

#[test]
fn a_done_callback_gets_its_bound_url_before_the_result_is_printed() {
    let expected = is(&[
        "start get url",
        "http://www.imooc.com",
        "send email to 紅燒肉",
        "紅燒肉",
    ]);
    check("done_callback", &[], &expected);
}

#[test]
fn wait_and_gather_run_groups_concurrently_and_a_cancelled_group_does_not_finish() {
    const IMOOC: &str = "http://www.imooc.com";
    const EDU: &str = "http://projectsedu.com";
    let expected = is(&[
        "--- asyncio.wait(tasks) ---",
        "start get http://www.imooc.com",
        "start get http://www.imooc.com",
        "end get http://www.imooc.com",
        "end get http://www.imooc.com",
        "done: 2, pending: 0",
        "--- asyncio.gather(*tasks) ---",
        "start get http://www.imooc.com",
        "start get http://www.imooc.com",
        "end get http://www.imooc.com",
        "end get http://www.imooc.com",
        r#"["http://www.imooc.com", "http://www.imooc.com"]"#,
        "--- asyncio.gather(*group1, *group2) ---",
        "start get http://projectsedu.com",
        "start get http://projectsedu.com",
        "start get http://www.imooc.com",
        "start get http://www.imooc.com",
        "end get http://projectsedu.com",
        "end get http://projectsedu.com",
        "end get http://www.imooc.com",
        "end get http://www.imooc.com",
        r#"["http://projectsedu.com", "http://projectsedu.com", "http://www.imooc.com", "http://www.imooc.com"]"#,
        "--- asyncio.gather(group1, group2) ---",
        "start get http://projectsedu.com",
        "start get http://projectsedu.com",
        "start get http://www.imooc.com",
        "start get http://www.imooc.com",
        "end get http://projectsedu.com",
        "end get http://projectsedu.com",
        "end get http://www.imooc.com",
        "end get http://www.imooc.com",
        r#"[["http://projectsedu.com", "http://projectsedu.com"], ["http://www.imooc.com", "http://www.imooc.com"]]"#,
        "--- group2.cancel() ---",
        "start get http://projectsedu.com",
        "start get http://projectsedu.com",
        // As in asyncio, group2.cancel() cancels its children at once:
        // they never start.
        "end get http://projectsedu.com",
        "end get http://projectsedu.com",
        r#"group1: ["http://projectsedu.com", "http://projectsedu.com"]"#,
        "group2: cancelled",
    ]);
    for o in check("wait_and_gather", &[], &expected) {
        // Five steps of ~2 s each, not 4 × 2 s per step.
        assert!(
            o.wall >= Duration::from_secs(10) && o.wall < Duration::from_secs(15),
            "{:?}",
            o.wall
        );
        let cancelled = o
            .stdout
            .split("--- group2.cancel() ---")
            .nth(1)
            .expect("cancel section");
        assert!(!cancelled.contains(&format!("end get {IMOOC}")), "group2 finished");
        assert_eq!(
            cancelled.matches(&format!("end get {EDU}")).count(),
            2,
            "group1 did not finish"
        );
    }
}

#[test]
fn a_chained_coroutine_returns_its_result_to_the_awaiting_one() {
    check("chain_coroutines", &[], &is(&["Compute 1 + 2 ...", "1 + 2 = 3"]));
}

#[test]
fn call_soon_runs_the_callback_then_stoploop_ends_run_forever() {
    for o in check("call_soon", &[], &is(&["success time 2"])) {
        assert!(o.wall < Duration::from_secs(2), "{:?}", o.wall);
    }
}

#[test]
fn call_later_callbacks_run_in_order_of_delay_not_of_scheduling() {
    let expected = is(&["success time 1", "success time 2", "success time 3"]);
    for o in check("call_later", &[], &expected) {
        assert!(
            o.wall >= Duration::from_secs(3) && o.wall < Duration::from_secs(5),
            "{:?}",
            o.wall
        );
    }
}

#[test]
fn call_soon_runs_before_every_call_later_timer() {
    let expected = is(&["success time 4", "success time 1", "success time 2", "success time 3"]);
    for o in check("call_soon_and_later", &[], &expected) {
        assert!(
            o.wall >= Duration::from_secs(3) && o.wall < Duration::from_secs(5),
            "{:?}",
            o.wall
        );
    }
}

#[test]
fn call_at_deadlines_on_the_loop_clock_run_in_time_order() {
    let expected = is(&["success time 4", "success time 1", "success time 2", "success time 3"]);
    for o in check("call_at", &[], &expected) {
        assert!(
            o.wall >= Duration::from_secs(3) && o.wall < Duration::from_secs(5),
            "{:?}",
            o.wall
        );
    }
}

#[test]
fn call_soon_threadsafe_callbacks_from_another_thread_wake_and_stop_the_loop() {
    let expected = is(&["success time 1", "success time 2", "success time 3"]);
    for o in check("call_soon_threadsafe", &[], &expected) {
        // Three 100 ms pauses on the worker; the idle loop wakes for each.
        assert!(
            o.wall >= Duration::from_millis(300) && o.wall < Duration::from_secs(3),
            "{:?}",
            o.wall
        );
    }
}

#[test]
fn without_ctrl_c_the_cancel_example_runs_every_task_to_completion() {
    let expected = is(&[
        "waiting",
        "waiting",
        "waiting",
        "done after 2s",
        "done after 3s",
        "done after 3s",
    ]);
    for o in check("ctrl_c", &[], &expected) {
        assert!(
            o.wall >= Duration::from_secs(3) && o.wall < Duration::from_secs(5),
            "{:?}",
            o.wall
        );
    }
}

#[test]
fn a_three_process_pipeline_sorts_and_uppercases_the_input() {
    check(
        "pipeline",
        &[],
        &is(&[
            "APPLE",
            "FIG",
            "PEAR",
            "cat: exit status: 0",
            "sort: exit status: 0",
            "tr: exit status: 0",
        ]),
    );
}

#[test]
fn udp_echo_returns_each_datagram_whole_and_in_order() {
    check("udp_echo", &[], &is(&["echo: ping 1", "echo: ping 2", "echo: ping 3"]));
}

#[test]
fn pipe_protocols_see_flow_control_every_byte_then_eof() {
    check(
        "pipe_protocol",
        &[],
        &is(&[
            "writer: connection_made, pause_writing, resume_writing, connection_lost(None)",
            "reader: first line \"hello from the write end\"",
            "reader: 262177 bytes, 21847 lines",
            "reader: eof_received, connection_lost(None)",
        ]),
    );
}

#[test]
fn cores_echo_serves_on_every_loop() {
    check(
        "cores_echo",
        &["--self-test", "200"],
        &is(&["served 200 connections on 2 loops", "every loop served some: true"]),
    );
}

#[test]
fn cores_http_answers_keep_alive_and_pipelined_requests_on_every_loop() {
    // 100 connections × (GET + HEAD pipelined, then a GET with a body and
    // `Connection: close`), every response byte checked by the client.
    check(
        "cores_http",
        &["--self-test", "100"],
        &is(&[
            "answered 300 requests on 100 connections, 2 loops",
            "every loop answered some: true",
            "accepted = answered / 3 on every loop: true",
        ]),
    );
}

#[test]
fn cores_pingpong_runs_every_row() {
    // The ringloop rows all run, whatever RINGLOOP_DRIVER says: each row
    // names its backend. Where io_uring cannot be built (the `fallback`
    // feature, an old kernel) the io_uring rows are skipped (said on stderr).
    let uring_rows: &[&'static str] = if EventLoop::builder().driver(DriverChoice::Uring).build().is_err() {
        &[]
    } else {
        &["ran: ringloop io_uring MSG_RING", "ran: ringloop io_uring eventfd"]
    };
    let mut expected = uring_rows.to_vec();
    expected.extend([
        "ran: ringloop readiness",
        "ran: tokio current_thread x2",
        "ran: std threads + mpsc (floor)",
    ]);
    check("cores_pingpong", &["--rounds", "200", "--quiet"], &is(&expected));
}
