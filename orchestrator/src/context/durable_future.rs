//! `DurableFuture`: the future every context operation returns.
//!
//! Unlike a plain future it can say *when* (at which history position) it became ready
//! without being consumed, which is what lets [`first_of`](super::OrchestrationContext::first_of)
//! pick the winner of a race in history order rather than in poll order.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::replay::state::{Completion, ReplayState, Source};

type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

enum Inner<T> {
    /// Waits for one completion delivered by the replay engine.
    Leaf {
        source: Source,
        convert: Box<dyn FnOnce(Completion) -> T>,
    },
    /// Any future built from other durable futures (retries, timeouts).
    Composite {
        future: LocalFuture<T>,
        ready: Option<(u64, T)>,
    },
    /// Already taken.
    Done,
}

/// A durable operation in flight: an activity, timer, sub-orchestration, external event,
/// or a combination of them. Await it, or pass it to `join_all` / `first_of`.
#[must_use = "a durable future does nothing unless awaited"]
pub struct DurableFuture<T> {
    state: Rc<RefCell<ReplayState>>,
    inner: Inner<T>,
}

impl<T: 'static> DurableFuture<T> {
    pub(crate) fn leaf(
        state: Rc<RefCell<ReplayState>>,
        source: Source,
        convert: impl FnOnce(Completion) -> T + 'static,
    ) -> Self {
        Self {
            state,
            inner: Inner::Leaf {
                source,
                convert: Box::new(convert),
            },
        }
    }

    pub(crate) fn composite(
        state: Rc<RefCell<ReplayState>>,
        future: impl Future<Output = T> + 'static,
    ) -> Self {
        Self {
            state,
            inner: Inner::Composite {
                future: Box::pin(future),
                ready: None,
            },
        }
    }

    /// Polls without consuming the output: the history position at which this became
    /// ready, or `None` while it is pending.
    pub(crate) fn ready_at(&mut self, cx: &mut Context<'_>) -> Option<u64> {
        match &mut self.inner {
            Inner::Leaf { source, .. } => {
                self.state.borrow().delivered.get(source).map(|d| d.order)
            }
            Inner::Composite { future, ready } => {
                if ready.is_none() {
                    if let Poll::Ready(value) = future.as_mut().poll(cx) {
                        *ready = Some((self.state.borrow().current_order, value));
                    }
                }
                ready.as_ref().map(|(order, _)| *order)
            }
            Inner::Done => None,
        }
    }

    /// Takes the output after `ready_at` returned `Some`.
    pub(crate) fn take(&mut self) -> Option<T> {
        match std::mem::replace(&mut self.inner, Inner::Done) {
            Inner::Leaf { source, convert } => {
                let delivered = self.state.borrow_mut().delivered.remove(&source);
                match delivered {
                    Some(d) => Some(convert(d.completion)),
                    None => {
                        self.inner = Inner::Leaf { source, convert };
                        None
                    }
                }
            }
            Inner::Composite { future, ready } => match ready {
                Some((_, value)) => Some(value),
                None => {
                    self.inner = Inner::Composite {
                        future,
                        ready: None,
                    };
                    None
                }
            },
            Inner::Done => None,
        }
    }
}

// Outputs are stored by value and never pinned; the inner future is boxed.
impl<T> Unpin for DurableFuture<T> {}
impl<T> Unpin for JoinAll<T> {}
impl<T> Unpin for FirstOf<T> {}

impl<T: 'static> Future for DurableFuture<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        if this.ready_at(cx).is_some() {
            if let Some(value) = this.take() {
                return Poll::Ready(value);
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for DurableFuture<T> {
    fn drop(&mut self) {
        // An event waiter that will never be awaited must not swallow a later event.
        if let Inner::Leaf {
            source: Source::Event(waiter),
            ..
        } = &self.inner
        {
            if let Ok(mut state) = self.state.try_borrow_mut() {
                state.cancel_waiter(*waiter);
            }
        }
    }
}

/// Resolves when every future has; outputs in input order.
///
/// A poll costs the composites still running plus, amortized, one look per leaf: a leaf's
/// readiness is a lookup without side effects, so leaves are taken in input order from the
/// first one not taken, and a pending one ends the look (the ones after it stay delivered
/// until it is taken). Composites (retries, timeouts) progress only when polled, so each
/// poll polls every unfinished one, in input order, as a plain join does. Without this a
/// fan-out of N replayed in O(N²): the engine polls after every completion.
pub struct JoinAll<T> {
    futures: Vec<DurableFuture<T>>,
    outputs: Vec<Option<T>>,
    /// Composites not finished yet, in input order.
    composites: Vec<usize>,
    /// The first leaf not taken yet (leaves before it are taken).
    next_leaf: usize,
    /// Futures not taken yet.
    remaining: usize,
}

impl<T: 'static> JoinAll<T> {
    pub(crate) fn new(futures: Vec<DurableFuture<T>>) -> Self {
        let outputs = futures.iter().map(|_| None).collect();
        let composites = futures
            .iter()
            .enumerate()
            .filter(|(_, f)| matches!(f.inner, Inner::Composite { .. }))
            .map(|(i, _)| i)
            .collect();
        let remaining = futures.len();
        Self {
            futures,
            outputs,
            composites,
            next_leaf: 0,
            remaining,
        }
    }
}

impl<T: 'static> Future for JoinAll<T> {
    type Output = Vec<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<T>> {
        let this = self.get_mut();
        let (futures, outputs) = (&mut this.futures, &mut this.outputs);
        let mut taken = 0;
        this.composites.retain(|&i| {
            if futures[i].ready_at(cx).is_some() {
                outputs[i] = futures[i].take();
                taken += 1;
                false
            } else {
                true
            }
        });
        while this.next_leaf < futures.len() {
            let i = this.next_leaf;
            if outputs[i].is_none() && matches!(futures[i].inner, Inner::Leaf { .. }) {
                if futures[i].ready_at(cx).is_none() {
                    break;
                }
                outputs[i] = futures[i].take();
                taken += 1;
            }
            this.next_leaf += 1;
        }
        this.remaining -= taken;
        if this.remaining == 0 {
            Poll::Ready(this.outputs.iter_mut().filter_map(Option::take).collect())
        } else {
            Poll::Pending
        }
    }
}

/// Resolves with the future that became ready first in history order: `(index, output)`.
pub struct FirstOf<T> {
    futures: Vec<DurableFuture<T>>,
}

impl<T: 'static> FirstOf<T> {
    pub(crate) fn new(futures: Vec<DurableFuture<T>>) -> Self {
        Self { futures }
    }
}

impl<T: 'static> Future for FirstOf<T> {
    type Output = (usize, T);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(usize, T)> {
        let this = self.get_mut();
        let mut winner: Option<(u64, usize)> = None;
        for (index, future) in this.futures.iter_mut().enumerate() {
            if let Some(order) = future.ready_at(cx) {
                if winner.is_none_or(|(best, _)| order < best) {
                    winner = Some((order, index));
                }
            }
        }
        if let Some((_, index)) = winner {
            if let Some(value) = this.futures[index].take() {
                // The losers are dropped here; a dropped event waiter returns its event.
                this.futures.clear();
                return Poll::Ready((index, value));
            }
        }
        Poll::Pending
    }
}
