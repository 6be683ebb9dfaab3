//! The transport's tasks: the reader feeding the protocol, the writer
//! draining the write buffer, the watcher of a write pipe's reader end, and
//! the wake-up helpers they share with [`Transport`].

use super::*;

pub(super) fn wake_all(st: &mut State) {
    if let Some(w) = st.reader_waker.take() {
        w.wake();
    }
    if let Some(w) = st.writer_waker.take() {
        w.wake();
    }
}

/// Runs `fut` until it completes (`Some`) or `stop` says so (`None`);
/// the task's waker is registered for both.
async fn unless<T>(
    t: &Transport,
    fut: impl Future<Output = T>,
    stop: impl Fn(&State) -> bool,
    slot: fn(&mut State) -> &mut Option<Waker>,
) -> Option<T> {
    let mut fut = std::pin::pin!(fut);
    poll_fn(|cx| {
        {
            let mut st = t.shared.state.borrow_mut();
            if stop(&st) {
                return Poll::Ready(None);
            }
            *slot(&mut st) = Some(cx.waker().clone());
        }
        fut.as_mut().poll(cx).map(Some)
    })
    .await
}

fn reader_slot(st: &mut State) -> &mut Option<Waker> {
    &mut st.reader_waker
}

fn writer_slot(st: &mut State) -> &mut Option<Waker> {
    &mut st.writer_waker
}

/// Waits until reading is not paused; `false` when closing.
async fn wait_reading(t: &Transport) -> bool {
    poll_fn(|cx| {
        let mut st = t.shared.state.borrow_mut();
        if st.closing {
            Poll::Ready(false)
        } else if !st.reading_paused {
            Poll::Ready(true)
        } else {
            st.reader_waker = Some(cx.waker().clone());
            Poll::Pending
        }
    })
    .await
}

pub(super) async fn reader<S: StreamIo>(t: Transport, io: Rc<S>) {
    if t.shared.kind == Kind::WritePipe {
        return watch_reader_end(t, io).await;
    }
    let mut buf = Vec::with_capacity(READ_SIZE);
    loop {
        if !wait_reading(&t).await {
            return;
        }
        buf.clear();
        let Some((res, b)) = unless(&t, io.read_some(buf), |st| st.closing, reader_slot).await else {
            return;
        };
        buf = b;
        match res {
            Ok(0) => {
                let keep_open = t.call(|p| p.eof_received()).await;
                // A pipe has nothing left to do after its end of file.
                if keep_open != Some(true) || t.shared.kind == Kind::ReadPipe {
                    t.close();
                }
                return;
            }
            Ok(n) => {
                // Bytes received while paused wait for resume_reading.
                if !wait_reading(&t).await {
                    return;
                }
                t.call(|p| p.data_received(&buf[..n])).await;
            }
            Err(e) => {
                t.fatal(e);
                return;
            }
        }
    }
}

/// The write pipe's "reader": its `read_some` resolves once the pipe's
/// reader end is gone (asyncio's `_read_ready` on a write pipe). Then the
/// transport closes; bytes still buffered make that a `BrokenPipe` loss.
async fn watch_reader_end<S: StreamIo>(t: Transport, io: Rc<S>) {
    let Some((res, _)) = unless(&t, io.read_some(Vec::new()), |st| st.closing, reader_slot).await else {
        return;
    };
    match res {
        Ok(_) => {
            let buffered = {
                let st = t.shared.state.borrow();
                st.buf.len() + st.in_flight > 0
            };
            if buffered {
                t.fatal(io::Error::from(io::ErrorKind::BrokenPipe));
            } else {
                t.close();
            }
        }
        Err(e) => t.fatal(e),
    }
}

pub(super) async fn writer<S: StreamIo>(t: Transport, io: Rc<S>) {
    let mut eof_sent = false;
    loop {
        let next = poll_fn(|cx| {
            let mut st = t.shared.state.borrow_mut();
            if st.aborted {
                return Poll::Ready(None);
            }
            if !st.buf.is_empty() {
                let chunk = std::mem::take(&mut st.buf);
                st.in_flight = chunk.len();
                return Poll::Ready(Some(Some(chunk)));
            }
            if st.eof_requested && !eof_sent {
                return Poll::Ready(Some(None));
            }
            if st.closing {
                return Poll::Ready(None);
            }
            st.writer_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        match next {
            None => break,
            Some(None) => {
                eof_sent = true;
                if let Err(e) = io.shutdown_write() {
                    t.fatal(e);
                    break;
                }
            }
            Some(Some(chunk)) => {
                let res = unless(&t, io.write_everything(chunk), |st| st.aborted, writer_slot).await;
                t.shared.state.borrow_mut().in_flight = 0;
                match res {
                    None => break,
                    Some((Err(e), _)) => {
                        t.fatal(e);
                        break;
                    }
                    Some((Ok(()), _)) => t.maybe_resume_protocol(),
                }
            }
        }
    }
    // Closing (or failed): the reader stops at `closing`; deliver
    // connection_lost once, then let the socket close with the last Rc.
    let err = {
        let mut st = t.shared.state.borrow_mut();
        st.closing = true;
        st.buf = Vec::new();
        wake_all(&mut st);
        st.error.take()
    };
    drop(io);
    t.call(|p| p.connection_lost(err)).await;
    t.shared.fd.set(-1);
    t.shared.protocol.borrow_mut().take();
    let wakers = {
        let mut st = t.shared.state.borrow_mut();
        st.conn_lost = true;
        std::mem::take(&mut st.closed_wakers)
    };
    for w in wakers {
        w.wake();
    }
}
