//! A `Send` channel between loops (or any threads): many senders, one
//! receiver, bounded or unbounded; the receiver is a `futures_core::Stream`.
//!
//! Delivery wakes the receiving task through its waker: a ringloop task on
//! another loop is woken through that loop's cross-thread queue (which
//! notifies the loop only when it sleeps). Each sender's messages arrive in
//! the order it sent them; none is lost while the receiver lives.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct State<T> {
    queue: VecDeque<T>,
    /// `None`: unbounded.
    cap: Option<usize>,
    rx_waker: Option<Waker>,
    /// Senders waiting for room (bounded channels).
    tx_wakers: Vec<Waker>,
    senders: usize,
    rx_alive: bool,
}

struct Chan<T> {
    state: Mutex<State<T>>,
}

impl<T> Chan<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No user code runs under the lock: a poisoned state is consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The message could not be delivered: the receiver is gone. Holds it.
#[derive(PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}
impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the receiver of the channel is gone")
    }
}
impl<T> std::error::Error for SendError<T> {}

/// Why [`Sender::try_send`] did not deliver; holds the message.
#[derive(PartialEq, Eq)]
pub enum TrySendError<T> {
    /// A bounded channel is full.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}
impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the channel is full"),
            TrySendError::Closed(_) => f.write_str("the receiver of the channel is gone"),
        }
    }
}
impl<T> std::error::Error for TrySendError<T> {}

/// An unbounded channel: [`Sender::send`] never waits.
pub fn unbounded<T: Send>() -> (Sender<T>, Receiver<T>) {
    make(None)
}

/// A channel holding at most `cap` messages (at least 1): [`Sender::send`]
/// waits for room.
pub fn bounded<T: Send>(cap: usize) -> (Sender<T>, Receiver<T>) {
    make(Some(cap.max(1)))
}

fn make<T>(cap: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            cap,
            rx_waker: None,
            tx_wakers: Vec::new(),
            senders: 1,
            rx_alive: true,
        }),
    });
    (Sender { chan: chan.clone() }, Receiver { chan })
}

/// The sending side; `Clone + Send + Sync` when `T: Send`.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.lock().senders += 1;
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut s = self.chan.lock();
            s.senders -= 1;
            if s.senders == 0 { s.rx_waker.take() } else { None }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Sender<T> {
    /// Queues `value` unless the channel is full or the receiver is gone.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let waker = {
            let mut s = self.chan.lock();
            if !s.rx_alive {
                return Err(TrySendError::Closed(value));
            }
            if s.cap.is_some_and(|c| s.queue.len() >= c) {
                return Err(TrySendError::Full(value));
            }
            s.queue.push_back(value);
            s.rx_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Sends `value`, waiting for room in a bounded channel (an unbounded
    /// one is ready at once). Errors when the receiver is gone.
    pub fn send(&self, value: T) -> SendFuture<'_, T> {
        SendFuture {
            sender: self,
            value: Some(value),
        }
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        !self.chan.lock().rx_alive
    }
}

/// The future of [`Sender::send`].
#[must_use = "futures do nothing unless awaited"]
pub struct SendFuture<'a, T> {
    sender: &'a Sender<T>,
    value: Option<T>,
}

impl<T> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFuture").finish_non_exhaustive()
    }
}

impl<T> Unpin for SendFuture<'_, T> {}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.get_mut();
        let Some(value) = me.value.take() else {
            return Poll::Ready(Ok(()));
        };
        match me.sender.try_send(value) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(TrySendError::Closed(v)) => Poll::Ready(Err(SendError(v))),
            Err(TrySendError::Full(v)) => {
                let mut s = me.sender.chan.lock();
                // Room may have appeared since try_send released the lock.
                if s.cap.is_some_and(|c| s.queue.len() < c) || !s.rx_alive {
                    drop(s);
                    me.value = Some(v);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                if !s.tx_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    s.tx_wakers.push(cx.waker().clone());
                }
                me.value = Some(v);
                Poll::Pending
            }
        }
    }
}

/// The receiving side; `Send` when `T: Send`.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl<T> Receiver<T> {
    /// The next message; `None` once every sender is gone and the queue
    /// is empty.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// A message if one is queued (`Ok(None)` when empty; `Err(())` when
    /// empty and every sender is gone).
    #[allow(clippy::result_unit_err)]
    pub fn try_recv(&mut self) -> Result<Option<T>, ()> {
        let (v, wakers) = {
            let mut s = self.chan.lock();
            match s.queue.pop_front() {
                Some(v) => {
                    let wakers = if s.tx_wakers.is_empty() {
                        Vec::new()
                    } else {
                        std::mem::take(&mut s.tx_wakers)
                    };
                    (v, wakers)
                }
                None if s.senders == 0 => return Err(()),
                None => return Ok(None),
            }
        };
        for w in wakers {
            w.wake();
        }
        Ok(Some(v))
    }

    /// Polls for the next message (see [`recv`](Self::recv)).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let (v, wakers) = {
            let mut s = self.chan.lock();
            match s.queue.pop_front() {
                Some(v) => {
                    let wakers = if s.tx_wakers.is_empty() {
                        Vec::new()
                    } else {
                        std::mem::take(&mut s.tx_wakers)
                    };
                    (v, wakers)
                }
                None if s.senders == 0 => return Poll::Ready(None),
                None => {
                    match &s.rx_waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => s.rx_waker = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
            }
        };
        // Waiting senders all retry: one finds room, the others wait again.
        for w in wakers {
            w.wake();
        }
        Poll::Ready(Some(v))
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.chan.lock().queue.len()
    }

    /// Whether no message is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (queued, wakers) = {
            let mut s = self.chan.lock();
            s.rx_alive = false;
            (std::mem::take(&mut s.queue), std::mem::take(&mut s.tx_wakers))
        };
        drop(queued);
        for w in wakers {
            w.wake();
        }
    }
}

impl<T> futures_core::Stream for Receiver<T> {
    type Item = T;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_recv(cx)
    }
}
