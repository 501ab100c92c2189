//! A lane's bounded queue: callers push without blocking (or wait asynchronously for room),
//! workers block for what is queued.
//!
//! Callers waiting for room hold a ticket in an ordered map, so that one that leaves (its future
//! dropped, a timeout) removes itself in `O(log n)`: however many callers give up at once, they
//! cost about what their calls would have.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Why a push failed; the item comes back.
pub(crate) enum Refused<T> {
    /// No room.
    Full(T),
    /// The queue no longer takes items.
    Closed(T),
}

pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    /// Workers waiting for an item.
    takers: Condvar,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Callers waiting for room, in the order they came.
    waiting: BTreeMap<u64, Waker>,
    /// Places kept for callers woken from `waiting` who have not come back for them yet, so
    /// that newcomers cannot take them.
    reserved: usize,
    next_ticket: u64,
    /// Workers waiting in `pop`, and how many of them have been woken and not yet run: a push
    /// wakes a worker only if one waits that no earlier push woke (a wake is a system call).
    idle: usize,
    woken: usize,
}

impl<T> State<T> {
    fn has_room(&self, capacity: usize) -> bool {
        self.items.len() + self.reserved < capacity
    }
}

impl<T> Queue<T> {
    pub(crate) fn new(capacity: usize) -> Queue<T> {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                waiting: BTreeMap::new(),
                reserved: 0,
                next_ticket: 0,
                idle: 0,
                woken: 0,
            }),
            takers: Condvar::new(),
            capacity,
        }
    }

    /// Items are plain data and every critical section leaves the state whole, so a panic
    /// elsewhere while the lock was held cannot have broken it.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `item` if there is room and nobody is waiting for it already.
    pub(crate) fn try_push(&self, item: T) -> Result<(), Refused<T>> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refused::Closed(item));
        }
        if !state.has_room(self.capacity) || !state.waiting.is_empty() {
            return Err(Refused::Full(item));
        }
        state.items.push_back(item);
        self.wake_a_taker(state);
        Ok(())
    }

    /// Wakes a waiting worker for an item just queued, unless every waiting one was woken.
    fn wake_a_taker(&self, mut state: MutexGuard<'_, State<T>>) {
        if state.idle > state.woken {
            state.woken += 1;
            drop(state);
            self.takers.notify_one();
        }
    }

    /// Queues `item` once there is room: a future that waits its turn.
    pub(crate) fn push(self: &Arc<Self>, item: T) -> Push<T> {
        Push {
            queue: Arc::clone(self),
            item: Some(item),
            ticket: None,
        }
    }

    /// The next item, waiting for one; `None` once the queue is closed and empty.
    pub(crate) fn pop(&self) -> Option<T> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                self.make_room(state);
                return Some(item);
            }
            if state.closed {
                return None;
            }
            state.idle += 1;
            state = self
                .takers
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.idle -= 1;
            // A wake may also be spurious: then a later push wakes one more than needed.
            state.woken = state.woken.saturating_sub(1);
        }
    }

    /// Up to `max` more items, without waiting, handed to `take`.
    pub(crate) fn pop_more(&self, max: usize, mut take: impl FnMut(T)) {
        let mut state = self.lock();
        let n = max.min(state.items.len());
        state.items.drain(..n).for_each(&mut take);
        self.make_room(state);
    }

    /// Stops taking items; waiting callers and workers wake to see it. What is queued stays
    /// for the workers.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.reserved = 0;
        let waiting = std::mem::take(&mut state.waiting);
        drop(state);
        self.takers.notify_all();
        waiting.into_values().for_each(Waker::wake);
    }

    /// Takes everything queued, to fail it (after [`Queue::close`]).
    pub(crate) fn take_all(&self) -> VecDeque<T> {
        std::mem::take(&mut self.lock().items)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Keeps each free place for the next caller in line and wakes them, after unlocking.
    fn make_room(&self, mut state: MutexGuard<'_, State<T>>) {
        let mut woken = Vec::new();
        while state.has_room(self.capacity) {
            match state.waiting.pop_first() {
                Some((_, waker)) => {
                    state.reserved += 1;
                    woken.push(waker);
                }
                None => break,
            }
        }
        drop(state);
        woken.into_iter().for_each(Waker::wake);
    }
}

/// A caller waiting for room, from [`Queue::push`]. Dropped before it is done, it leaves the
/// line, or hands on the place kept for it if it had been woken.
pub(crate) struct Push<T> {
    queue: Arc<Queue<T>>,
    item: Option<T>,
    ticket: Option<u64>,
}

impl<T> Push<T> {
    /// Gives back the item not pushed (when the caller decides to stop waiting).
    #[cfg(test)]
    fn into_item(mut self) -> Option<T> {
        self.item.take()
    }
}

impl<T> Unpin for Push<T> {}

impl<T> Future for Push<T> {
    /// `Err` with the item if the queue closed first.
    type Output = Result<(), T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), T>> {
        let this = &mut *self;
        let queue = &*this.queue;
        let mut state = queue.lock();
        let Some(item) = this.item.take() else {
            panic!("a queue push was polled after it completed");
        };
        if state.closed {
            this.ticket = None;
            return Poll::Ready(Err(item));
        }
        // A ticket out of the line was woken: a place is kept for it.
        let kept = this
            .ticket
            .is_some_and(|ticket| !state.waiting.contains_key(&ticket));
        let may_push = match kept {
            true => {
                state.reserved -= 1;
                true
            }
            false => {
                let first = match this.ticket {
                    Some(ticket) => {
                        state.waiting.first_key_value().map(|(t, _)| *t) == Some(ticket)
                    }
                    None => state.waiting.is_empty(),
                };
                first && state.has_room(queue.capacity)
            }
        };
        if may_push {
            if let Some(ticket) = this.ticket.take() {
                state.waiting.remove(&ticket);
            }
            state.items.push_back(item);
            queue.wake_a_taker(state);
            return Poll::Ready(Ok(()));
        }
        let ticket = *this.ticket.get_or_insert_with(|| {
            state.next_ticket += 1;
            state.next_ticket
        });
        state.waiting.insert(ticket, cx.waker().clone());
        this.item = Some(item);
        Poll::Pending
    }
}

impl<T> Drop for Push<T> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else { return };
        let mut state = self.queue.lock();
        if state.closed || state.waiting.remove(&ticket).is_some() {
            return;
        }
        // Woken, but gone before taking its place: the next caller in line gets it.
        state.reserved -= 1;
        self.queue.make_room(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll<T>(push: &mut Push<T>, waker: &Waker) -> Poll<Result<(), T>> {
        Pin::new(push).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn callers_wait_their_turn_and_leave_in_any_order() {
        let queue = Arc::new(Queue::new(1));
        assert!(queue.try_push(0).is_ok());
        assert!(matches!(queue.try_push(9), Err(Refused::Full(9))));
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&wakes));
        let mut pushes: Vec<_> = (1..=3).map(|i| queue.push(i)).collect();
        for push in &mut pushes {
            assert!(poll(push, &waker).is_pending());
        }
        // The second leaves the line; nothing is woken for it.
        let second = pushes.remove(1);
        assert_eq!(second.into_item(), Some(2));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        // A place frees: the first in line is woken and takes it, ahead of a newcomer.
        assert_eq!(queue.pop(), Some(0));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(matches!(queue.try_push(8), Err(Refused::Full(8))));
        assert!(poll(&mut pushes[0], &waker).is_ready());
        assert_eq!(queue.pop(), Some(1));
        // Woken, then gone: its turn passes to no one left but the queue has room again.
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
        drop(pushes.remove(1));
        assert!(queue.try_push(7).is_ok());
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn newcomers_never_take_the_place_kept_for_a_woken_caller() {
        let queue = Arc::new(Queue::new(1));
        queue.try_push(0).ok();
        let waker = Waker::noop();
        let mut first = queue.push(1);
        assert!(poll(&mut first, waker).is_pending());
        for round in 0..10 {
            assert!(queue.pop().is_some(), "round {round}");
            assert!(
                matches!(queue.try_push(9), Err(Refused::Full(9))),
                "round {round}"
            );
            let mut late = queue.push(9);
            assert!(poll(&mut late, waker).is_pending(), "round {round}");
            assert!(poll(&mut first, waker).is_ready(), "round {round}");
            first = late;
        }
    }

    #[test]
    fn a_woken_caller_that_leaves_hands_its_turn_on() {
        let queue = Arc::new(Queue::new(1));
        queue.try_push(0).ok();
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&wakes));
        let mut first = queue.push(1);
        let mut second = queue.push(2);
        assert!(poll(&mut first, &waker).is_pending());
        assert!(poll(&mut second, &waker).is_pending());
        assert_eq!(queue.pop(), Some(0));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the first was woken");
        drop(first);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2, "so is the second");
        assert!(poll(&mut second, &waker).is_ready());
        assert_eq!(queue.pop(), Some(2));
    }

    #[test]
    fn closing_wakes_everyone_and_keeps_what_is_queued() {
        let queue = Arc::new(Queue::new(1));
        queue.try_push(0).ok();
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&wakes));
        let mut push = queue.push(1);
        assert!(poll(&mut push, &waker).is_pending());
        queue.close();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(matches!(poll(&mut push, &waker), Poll::Ready(Err(1))));
        assert!(matches!(queue.try_push(2), Err(Refused::Closed(2))));
        assert_eq!(queue.pop(), Some(0));
        assert_eq!(queue.pop(), None, "closed and empty: the worker stops");
    }

    #[test]
    fn every_item_reaches_a_sleeping_worker() {
        // Pushes wake only workers no earlier push woke: none may be left asleep with items
        // queued.
        let queue = Arc::new(Queue::new(64));
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let queue = Arc::clone(&queue);
                std::thread::spawn(move || {
                    let mut taken = 0;
                    while queue.pop().is_some() {
                        taken += 1;
                    }
                    taken
                })
            })
            .collect();
        for round in 0..200 {
            for i in 0..(round % 5) {
                while queue.try_push(i).is_err() {
                    std::thread::yield_now();
                }
            }
            // Let the workers fall asleep again now and then.
            if round % 20 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while queue.len() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "items left queued while the workers sleep"
            );
            std::thread::yield_now();
        }
        queue.close();
        let taken: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        assert_eq!(taken, (0..200).map(|r| r % 5).sum::<usize>());
    }

    #[test]
    fn callers_leave_from_anywhere_in_the_line() {
        let queue = Arc::new(Queue::new(1));
        queue.try_push(0).ok();
        let waker = Waker::noop();
        let mut pushes: Vec<_> = (1..=1000).map(|i| queue.push(i)).collect();
        for push in &mut pushes {
            assert!(poll(push, waker).is_pending());
        }
        // The middle of the line leaves first, then the rest.
        pushes.drain(250..750);
        assert_eq!(queue.lock().waiting.len(), 500);
        drop(pushes);
        assert!(queue.lock().waiting.is_empty());
        assert_eq!(queue.pop(), Some(0));
        assert!(queue.try_push(1).is_ok(), "nobody holds a place");
    }
}
