//! asyncio's pipe transports (`ringloop::protocols::connect_read_pipe` /
//! `connect_write_pipe`) on both backends: callback order, every byte in
//! order, write-side flow control against a paused reader, an early close
//! on either end, typed errors, and a `cat` child between two pipes.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use ringloop::protocols::{ExtraInfo, Protocol, Transport, TransportError, connect_read_pipe, connect_write_pipe};

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into a valid array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: two fresh fds that we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Records the callbacks of a read pipe and the bytes it got.
#[derive(Default)]
struct Reader {
    transport: Option<Transport>,
    events: Vec<String>,
    data: Vec<u8>,
}

impl Protocol for Reader {
    fn connection_made(&mut self, t: &Transport) {
        self.events.push("made".into());
        self.transport = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        assert!(!data.is_empty());
        if self.events.last().map(String::as_str) != Some("data") {
            self.events.push("data".into());
        }
        self.data.extend_from_slice(data);
    }
    fn eof_received(&mut self) -> bool {
        self.events.push("eof".into());
        // Asking to stay open changes nothing for a pipe.
        true
    }
    fn connection_lost(&mut self, err: Option<io::Error>) {
        self.events.push(format!("lost {:?}", err.map(|e| e.kind())));
    }
}

/// Records a write pipe's flow-control and close callbacks.
#[derive(Default)]
struct Writer {
    events: Vec<String>,
}

impl Protocol for Writer {
    fn connection_made(&mut self, _: &Transport) {
        self.events.push("made".into());
    }
    fn data_received(&mut self, _: &[u8]) {
        panic!("a write pipe never receives data");
    }
    fn pause_writing(&mut self) {
        self.events.push("pause".into());
    }
    fn resume_writing(&mut self) {
        self.events.push("resume".into());
    }
    fn connection_lost(&mut self, err: Option<io::Error>) {
        self.events.push(format!("lost {:?}", err.map(|e| e.kind())));
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 253) as u8).collect()
}

async fn settle() {
    for _ in 0..20 {
        ringloop::sleep(Duration::from_millis(1)).await;
    }
}

#[ringloop::test]
async fn one_mib_with_flow_control_against_a_paused_reader() {
    let (r, w) = pipe();
    let (rt, reader) = connect_read_pipe(Reader::default, r).unwrap();
    let (wt, writer) = connect_write_pipe(Writer::default, w).unwrap();
    assert!(matches!(rt.get_extra_info("pipe"), Some(ExtraInfo::Fd(_))));
    assert!(rt.get_extra_info("socket").is_none());
    assert!(!wt.is_reading() && rt.is_reading());
    rt.pause_reading();

    let payload = pattern(1 << 20);
    wt.write(&payload).unwrap();
    // Above the 64 KiB high-water mark at once.
    assert_eq!(writer.borrow().events, ["made", "pause"]);
    settle().await;
    // The reader is paused: the pipe fills and the buffer stays high.
    assert!(wt.get_write_buffer_size() > 64 * 1024, "{}", wt.get_write_buffer_size());
    assert_eq!(writer.borrow().events, ["made", "pause"]);
    assert!(reader.borrow().data.is_empty());

    rt.resume_reading();
    while wt.get_write_buffer_size() > 0 {
        ringloop::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(writer.borrow().events, ["made", "pause", "resume"]);
    wt.write_eof().unwrap();
    assert_eq!(wt.write(b"x"), Err(TransportError::WriteAfterEof));
    wt.wait_closed().await;
    rt.wait_closed().await;
    assert_eq!(writer.borrow().events, ["made", "pause", "resume", "lost None"]);
    let r = reader.borrow();
    assert_eq!(r.events, ["made", "data", "eof", "lost None"]);
    assert!(r.data == payload, "got {} bytes, not the same", r.data.len());
}

#[ringloop::test]
async fn read_pipe_is_not_writable() {
    let (r, w) = pipe();
    let (rt, reader) = connect_read_pipe(Reader::default, r).unwrap();
    assert_eq!(rt.write(b"no"), Err(TransportError::NotWritable));
    assert_eq!(rt.write_eof(), Err(TransportError::NotWritable));
    assert!(!rt.can_write_eof());
    // Closing the transport closes the read end: its writer gets EPIPE.
    rt.close();
    rt.wait_closed().await;
    assert_eq!(reader.borrow().events, ["made", "lost None"]);
    assert_eq!(rt.get_extra_info("pipe").map(|_| ()), None);
    let mut f = std::fs::File::from(w);
    let err = io::Write::write(&mut f, b"late").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
}

#[ringloop::test]
async fn writer_closing_early_gives_the_reader_what_was_sent_then_eof() {
    let (r, w) = pipe();
    let (rt, reader) = connect_read_pipe(Reader::default, r).unwrap();
    let (wt, writer) = connect_write_pipe(Writer::default, w).unwrap();
    wt.write(b"partial ").unwrap();
    wt.write(b"message").unwrap();
    // close (not abort) sends the buffer first.
    wt.close();
    assert_eq!(wt.write_eof(), Ok(()));
    wt.wait_closed().await;
    rt.wait_closed().await;
    assert_eq!(writer.borrow().events, ["made", "lost None"]);
    assert_eq!(reader.borrow().data, b"partial message");
    assert_eq!(reader.borrow().events, ["made", "data", "eof", "lost None"]);
}

#[ringloop::test]
async fn reader_end_gone_is_noticed_by_the_write_pipe() {
    // Nothing buffered: connection_lost(None), like asyncio.
    let (r, w) = pipe();
    let (wt, writer) = connect_write_pipe(Writer::default, w).unwrap();
    drop(r);
    wt.wait_closed().await;
    assert_eq!(writer.borrow().events, ["made", "lost None"]);
    assert_eq!(wt.write(b"x"), Err(TransportError::Closed));

    // Bytes buffered behind a full pipe when the reader goes: BrokenPipe.
    let (r, w) = pipe();
    let (wt, writer) = connect_write_pipe(Writer::default, w).unwrap();
    wt.write(&pattern(1 << 20)).unwrap();
    settle().await;
    assert!(wt.get_write_buffer_size() > 0);
    drop(r);
    wt.wait_closed().await;
    assert_eq!(writer.borrow().events, ["made", "pause", "lost Some(BrokenPipe)"]);
}

#[ringloop::test]
async fn abort_discards_the_buffer() {
    let (r, w) = pipe();
    let (wt, writer) = connect_write_pipe(Writer::default, w).unwrap();
    wt.write(&pattern(1 << 20)).unwrap();
    settle().await;
    wt.abort();
    wt.wait_closed().await;
    assert_eq!(writer.borrow().events, ["made", "pause", "lost None"]);
    // The pipe got at most what fits in it, then end of file (once the
    // cancelled write let go of the write end).
    let (rt, reader) = connect_read_pipe(Reader::default, r).unwrap();
    rt.wait_closed().await;
    let got = &reader.borrow().data;
    assert!(got.len() < 1 << 20, "{}", got.len());
    assert!(*got == pattern(got.len()));
}

#[ringloop::test]
async fn a_regular_file_is_refused() {
    let f = std::fs::File::open("Cargo.toml").unwrap();
    let Err(err) = connect_read_pipe(Reader::default, f) else {
        panic!("a regular file was accepted as a pipe");
    };
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[ringloop::test]
async fn through_a_cat_child() {
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn() else {
        eprintln!("skipped: no `cat`");
        return;
    };
    let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let (rt, reader) = connect_read_pipe(Reader::default, stdout).unwrap();
    let (wt, _writer) = connect_write_pipe(Writer::default, stdin).unwrap();
    let payload = pattern(300_000);
    for chunk in payload.chunks(10_000) {
        wt.write(chunk).unwrap();
    }
    wt.write_eof().unwrap();
    rt.wait_closed().await;
    wt.wait_closed().await;
    assert!(reader.borrow().data == payload);
    assert_eq!(reader.borrow().events, ["made", "data", "eof", "lost None"]);
    let status = ringloop::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success());
}
