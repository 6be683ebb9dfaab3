//! Read a pipe with a protocol, write the other end through a transport
//! (asyncio's `loop.connect_read_pipe` / `loop.connect_write_pipe`).
//!
//! ```sh
//! cargo run --example pipe_protocol
//! ```
//!
//! An OS pipe: the write end gets a transport whose protocol is told when
//! its buffer crosses the water marks (`pause_writing` / `resume_writing`);
//! the read end gets a protocol that counts lines as `data_received`
//! delivers them. The writer sends a greeting and 256 KiB of numbered
//! lines, then `write_eof` closes the pipe; the reader sees end of file
//! and both transports report `connection_lost`. Prints what each side saw.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use ringloop::protocols::{Protocol, Transport, connect_read_pipe, connect_write_pipe};

/// Counts bytes and lines; remembers the first line.
#[derive(Default)]
struct LineCounter {
    bytes: usize,
    lines: usize,
    first_line: Vec<u8>,
    events: Vec<String>,
}

impl Protocol for LineCounter {
    fn data_received(&mut self, data: &[u8]) {
        if self.lines == 0 {
            let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
            self.first_line.extend_from_slice(&data[..end]);
        }
        self.bytes += data.len();
        self.lines += data.iter().filter(|&&b| b == b'\n').count();
    }
    fn eof_received(&mut self) -> bool {
        self.events.push("eof_received".into());
        false
    }
    fn connection_lost(&mut self, err: Option<io::Error>) {
        self.events.push(format!("connection_lost({err:?})"));
    }
}

/// Records the flow-control calls of the write side.
#[derive(Default)]
struct Writer {
    events: Vec<String>,
}

impl Protocol for Writer {
    fn connection_made(&mut self, transport: &Transport) {
        self.events.push("connection_made".into());
        transport.write(b"hello from the write end\n").expect("open");
    }
    fn pause_writing(&mut self) {
        self.events.push("pause_writing".into());
    }
    fn resume_writing(&mut self) {
        self.events.push("resume_writing".into());
    }
    fn connection_lost(&mut self, err: Option<io::Error>) {
        self.events.push(format!("connection_lost({err:?})"));
    }
}

fn os_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into a valid array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two fresh fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[ringloop::main]
async fn main() -> io::Result<()> {
    let (read_end, write_end) = os_pipe()?;
    let (reader_t, reader) = connect_read_pipe(LineCounter::default, read_end)?;
    let (writer_t, writer) = connect_write_pipe(Writer::default, write_end)?;

    // 256 KiB of lines: far above the 64 KiB high-water mark.
    let mut block = Vec::new();
    for i in 0.. {
        if block.len() >= 256 * 1024 {
            break;
        }
        block.extend_from_slice(format!("line {i:06}\n").as_bytes());
    }
    writer_t.write(&block).map_err(io::Error::from)?;
    writer_t.write_eof().map_err(io::Error::from)?;

    writer_t.wait_closed().await;
    reader_t.wait_closed().await;
    println!("writer: {}", writer.borrow().events.join(", "));
    let r = reader.borrow();
    println!("reader: first line {:?}", String::from_utf8_lossy(&r.first_line));
    println!("reader: {} bytes, {} lines", r.bytes, r.lines);
    println!("reader: {}", r.events.join(", "));
    assert_eq!(r.bytes, 25 + block.len(), "every byte arrived");
    Ok(())
}
