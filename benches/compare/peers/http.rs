//! The HTTP/1.1 "hello" protocol every peer speaks: each complete request
//! (GET only, no body; the head ends with `\r\n\r\n`) is answered with
//! [`RESPONSE`], pipelined requests in order. A pure function, so every peer
//! shares the exact same parsing cost and [`self_check`] can test it.

/// The one response (keep-alive is HTTP/1.1's default).
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello";

/// Initial per-connection input buffer.
pub const INBUF: usize = 4096;

/// A connection whose unanswered request head outgrows this is closed.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Appends one [`RESPONSE`] to `out` per complete request in `input` and
/// returns how many bytes of `input` those requests took (a trailing partial
/// request is left for the next read).
pub fn respond(input: &[u8], out: &mut Vec<u8>) -> usize {
    let mut start = 0; // first byte of the current request
    let mut from = 0; // where the newline search resumes
    while let Some(p) = input[from..].iter().position(|&b| b == b'\n') {
        let nl = from + p;
        // The head ends at a "\r\n\r\n" lying wholly inside this request.
        if nl >= start + 3 && input[nl - 3..nl] == *b"\r\n\r" {
            out.extend_from_slice(RESPONSE);
            start = nl + 1;
        }
        from = nl + 1;
    }
    start
}

/// Makes room for a read into an owned `Vec` whose length is the buffered
/// input (the owned-buffer runtimes read into `buf.slice(buf.len()..)`):
/// doubles the capacity when it is full. `false` when the request head
/// would exceed [`MAX_REQUEST`] (close the connection).
pub fn make_room(buf: &mut Vec<u8>) -> bool {
    if buf.len() < buf.capacity() {
        return true;
    }
    if buf.len() >= MAX_REQUEST {
        return false;
    }
    buf.reserve_exact(buf.capacity().max(INBUF));
    true
}

/// The input buffer of the borrowed-buffer peers (tokio, raw io_uring, raw
/// epoll): zero-initialised storage plus a count of buffered bytes.
pub struct Input {
    buf: Vec<u8>,
    filled: usize,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            buf: vec![0; INBUF],
            filled: 0,
        }
    }
}

impl Input {
    /// The free space to read into (grown when full); `None` when the
    /// request head would exceed [`MAX_REQUEST`] (close the connection).
    /// Growing moves the storage: never call it while a read is in flight.
    pub fn spare(&mut self) -> Option<&mut [u8]> {
        if self.filled == self.buf.len() {
            if self.buf.len() >= MAX_REQUEST {
                return None;
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        Some(&mut self.buf[self.filled..])
    }

    /// Records `n` bytes read into [`spare`](Self::spare), answers the
    /// complete requests into `out` and keeps the unconsumed tail.
    pub fn received(&mut self, n: usize, out: &mut Vec<u8>) {
        self.filled += n;
        let used = respond(&self.buf[..self.filled], out);
        self.buf.copy_within(used..self.filled, 0);
        self.filled -= used;
    }
}

/// Checks [`respond`] on the cases the servers rely on.
pub fn self_check() -> Result<(), String> {
    const REQ: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
    let run = |input: &[u8], want_used: usize, want_responses: usize, what: &str| {
        let mut out = b"prior".to_vec();
        let used = respond(input, &mut out);
        if used != want_used {
            return Err(format!("{what}: consumed {used} bytes, want {want_used}"));
        }
        let mut want = b"prior".to_vec();
        for _ in 0..want_responses {
            want.extend_from_slice(RESPONSE);
        }
        if out != want {
            return Err(format!(
                "{what}: output {:?}, want {:?}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&want)
            ));
        }
        Ok(())
    };
    run(REQ, REQ.len(), 1, "one request")?;
    let two = [REQ, REQ].concat();
    run(&two, two.len(), 2, "two pipelined requests")?;
    let mut two_and_part = two.clone();
    two_and_part.extend_from_slice(&REQ[..20]);
    run(&two_and_part, two.len(), 2, "two requests and a partial one")?;
    run(&REQ[..REQ.len() - 1], 0, 0, "partial request (last byte missing)")?;
    run(&REQ[..REQ.len() - 2], 0, 0, "partial request (ends in \\r\\n)")?;
    run(b"", 0, 0, "empty input")?;
    // A request split across two reads, at every possible point, through the
    // same buffering the borrowed-buffer peers use.
    for cut in 1..REQ.len() {
        let mut input = Input::default();
        let mut out = Vec::new();
        for part in [&REQ[..cut], &REQ[cut..]] {
            let spare = input.spare().ok_or("spare refused")?;
            spare[..part.len()].copy_from_slice(part);
            input.received(part.len(), &mut out);
            if part.as_ptr() == REQ.as_ptr() && !out.is_empty() {
                return Err(format!("split at {cut}: answered before the request was complete"));
            }
        }
        if out != RESPONSE || input.filled != 0 {
            return Err(format!(
                "split at {cut}: {} output bytes, {} left buffered",
                out.len(),
                input.filled
            ));
        }
    }
    // An owned buffer grows when a head does not fit and stops at the cap.
    let mut v: Vec<u8> = Vec::with_capacity(INBUF);
    v.resize(v.capacity(), b'x');
    let before = v.capacity();
    if !make_room(&mut v) || v.capacity() <= before {
        return Err("make_room did not grow a full buffer".into());
    }
    while v.len() < MAX_REQUEST || v.len() < v.capacity() {
        v.resize(v.capacity().max(MAX_REQUEST), b'x');
    }
    if make_room(&mut v) {
        return Err("make_room grew past MAX_REQUEST".into());
    }
    Ok(())
}
