//! [`StreamReader`]: asyncio's buffered reader over a transport.

use std::cell::RefCell;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::protocols::Transport;

use super::*;

/// An `io::Error` kept to be reported more than once.
#[derive(Clone)]
pub(super) struct StoredError(pub(super) io::ErrorKind, pub(super) String);

impl StoredError {
    pub(super) fn new(e: &io::Error) -> Self {
        StoredError(e.kind(), e.to_string())
    }
    pub(super) fn get(&self) -> io::Error {
        io::Error::new(self.0, self.1.clone())
    }
}

#[derive(Default)]
pub(super) struct ReaderState {
    pub(super) buffer: Vec<u8>,
    pub(super) eof: bool,
    pub(super) error: Option<StoredError>,
    pub(super) limit: usize,
    pub(super) waker: Option<Waker>,
    pub(super) transport: Option<Transport>,
    pub(super) paused: bool,
}

impl ReaderState {
    pub(super) fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub(super) fn maybe_resume_transport(&mut self) {
        if self.paused && self.buffer.len() <= self.limit {
            self.paused = false;
            if let Some(t) = &self.transport {
                t.resume_reading();
            }
        }
    }
}

/// The reading side of a stream connection (asyncio's `StreamReader`).
/// Also usable on its own: [`StreamReader::new`] + [`feed_data`](Self::feed_data)
/// / [`feed_eof`](Self::feed_eof).
pub struct StreamReader {
    pub(super) st: Rc<RefCell<ReaderState>>,
}

impl fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.st.borrow();
        f.debug_struct("StreamReader")
            .field("buffered", &st.buffer.len())
            .field("eof", &st.eof)
            .field("limit", &st.limit)
            .finish()
    }
}

impl Default for StreamReader {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamReader {
    /// A reader with the default limit (64 KiB).
    pub fn new() -> StreamReader {
        Self::with_limit(DEFAULT_LIMIT)
    }

    /// A reader with a buffer limit (`limit=` of asyncio); a zero limit is
    /// taken as 1.
    pub fn with_limit(limit: usize) -> StreamReader {
        StreamReader {
            st: Rc::new(RefCell::new(ReaderState {
                limit: limit.max(1),
                ..ReaderState::default()
            })),
        }
    }

    /// Appends received bytes (what the stream protocol calls).
    pub fn feed_data(&self, data: &[u8]) {
        feed_data(&self.st, data)
    }

    /// Marks the end of the stream.
    pub fn feed_eof(&self) {
        let mut st = self.st.borrow_mut();
        st.eof = true;
        st.wake();
    }

    /// Makes every later read fail with `err` (asyncio's `set_exception`).
    pub fn set_exception(&self, err: io::Error) {
        let mut st = self.st.borrow_mut();
        st.error = Some(StoredError::new(&err));
        st.wake();
    }

    /// The error set by `set_exception` or the connection, if any.
    pub fn exception(&self) -> Option<io::Error> {
        self.st.borrow().error.as_ref().map(StoredError::get)
    }

    /// Whether the buffer is empty and the end was fed.
    pub fn at_eof(&self) -> bool {
        let st = self.st.borrow();
        st.eof && st.buffer.is_empty()
    }

    /// Bytes buffered now.
    pub fn buffered(&self) -> usize {
        self.st.borrow().buffer.len()
    }

    pub(super) fn check_error(&self) -> io::Result<()> {
        match &self.st.borrow().error {
            Some(e) => Err(e.get()),
            None => Ok(()),
        }
    }

    /// Waits for more data or the end (resuming a paused transport).
    async fn wait_for_data(&self) {
        let start = {
            let mut st = self.st.borrow_mut();
            if st.paused {
                st.paused = false;
                if let Some(t) = &st.transport {
                    t.resume_reading();
                }
            }
            st.buffer.len()
        };
        poll_fn(|cx| {
            let mut st = self.st.borrow_mut();
            if st.eof || st.error.is_some() || st.buffer.len() != start {
                Poll::Ready(())
            } else {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Up to `n` bytes: what is buffered, else waits for some; empty at the
    /// end of the stream (or for `n == 0`).
    pub async fn read(&mut self, n: usize) -> io::Result<Vec<u8>> {
        self.check_error()?;
        if n == 0 {
            return Ok(Vec::new());
        }
        loop {
            {
                let mut st = self.st.borrow_mut();
                if !st.buffer.is_empty() || st.eof {
                    let take = n.min(st.buffer.len());
                    let data: Vec<u8> = st.buffer.drain(..take).collect();
                    st.maybe_resume_transport();
                    return Ok(data);
                }
            }
            self.wait_for_data().await;
            self.check_error()?;
        }
    }

    /// Everything up to the end of the stream (asyncio's `read(-1)`).
    pub async fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let chunk = self.read(usize::MAX).await?;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
        }
    }

    /// Exactly `n` bytes; at an earlier end, `IncompleteRead` with the
    /// bytes read (which leave the buffer).
    pub async fn readexactly(&mut self, n: usize) -> Result<Vec<u8>, StreamError> {
        self.check_error()?;
        loop {
            {
                let mut st = self.st.borrow_mut();
                if st.buffer.len() >= n {
                    let data: Vec<u8> = st.buffer.drain(..n).collect();
                    st.maybe_resume_transport();
                    return Ok(data);
                }
                if st.eof {
                    let partial = std::mem::take(&mut st.buffer);
                    return Err(StreamError::IncompleteRead(IncompleteReadError {
                        partial,
                        expected: Some(n),
                    }));
                }
            }
            self.wait_for_data().await;
            self.check_error()?;
        }
    }

    /// Bytes up to and including `separator`. At the end of the stream
    /// without it: `IncompleteRead` with the rest (which leaves the buffer).
    /// When the separator is not within the limit: `LimitOverrun`, the
    /// bytes stay buffered.
    pub async fn readuntil(&mut self, separator: &[u8]) -> Result<Vec<u8>, StreamError> {
        if separator.is_empty() {
            return Err(StreamError::EmptySeparator);
        }
        self.check_error()?;
        let seplen = separator.len();
        let mut offset = 0;
        loop {
            {
                let mut st = self.st.borrow_mut();
                let buflen = st.buffer.len();
                if buflen - offset >= seplen {
                    if let Some(i) = find(&st.buffer[offset..], separator) {
                        let isep = offset + i;
                        if isep > st.limit {
                            return Err(StreamError::LimitOverrun(LimitOverrunError {
                                consumed: isep,
                                separator_found: true,
                            }));
                        }
                        let data: Vec<u8> = st.buffer.drain(..isep + seplen).collect();
                        st.maybe_resume_transport();
                        return Ok(data);
                    }
                    offset = buflen + 1 - seplen;
                    if offset > st.limit {
                        return Err(StreamError::LimitOverrun(LimitOverrunError {
                            consumed: offset,
                            separator_found: false,
                        }));
                    }
                }
                if st.eof {
                    let partial = std::mem::take(&mut st.buffer);
                    return Err(StreamError::IncompleteRead(IncompleteReadError {
                        partial,
                        expected: None,
                    }));
                }
            }
            self.wait_for_data().await;
            self.check_error()?;
        }
    }

    /// One line including its `\n`; at the end of the stream the rest
    /// without one (empty at the end). A line longer than the limit is
    /// `LimitOverrun` and is discarded (up to its `\n` if it was found,
    /// else the whole buffer), as asyncio's `ValueError`.
    pub async fn readline(&mut self) -> Result<Vec<u8>, StreamError> {
        match self.readuntil(b"\n").await {
            Ok(line) => Ok(line),
            Err(StreamError::IncompleteRead(e)) => Ok(e.partial),
            Err(StreamError::LimitOverrun(e)) => {
                let mut st = self.st.borrow_mut();
                if st.buffer.get(e.consumed) == Some(&b'\n') {
                    st.buffer.drain(..e.consumed + 1);
                } else {
                    st.buffer.clear();
                }
                st.maybe_resume_transport();
                Err(StreamError::LimitOverrun(e))
            }
            Err(e) => Err(e),
        }
    }
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub(super) fn feed_data(st: &Rc<RefCell<ReaderState>>, data: &[u8]) {
    let mut st = st.borrow_mut();
    if data.is_empty() {
        return;
    }
    st.buffer.extend_from_slice(data);
    st.wake();
    if !st.paused && st.buffer.len() > 2 * st.limit {
        if let Some(t) = &st.transport {
            t.pause_reading();
            st.paused = true;
        }
    }
}
