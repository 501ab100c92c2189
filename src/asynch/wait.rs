//! What the async client waits with, having no runtime of its own: both of two futures, and a
//! pause (a process-wide timer thread, started by the first pause).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Both outputs, once both futures are done.
pub(crate) async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut out_a, mut out_b) = (None, None);
    std::future::poll_fn(move |cx| {
        if out_a.is_none() {
            if let Poll::Ready(out) = a.as_mut().poll(cx) {
                out_a = Some(out);
            }
        }
        if out_b.is_none() {
            if let Poll::Ready(out) = b.as_mut().poll(cx) {
                out_b = Some(out);
            }
        }
        match (out_a.is_some(), out_b.is_some()) {
            (true, true) => Poll::Ready((out_a.take().unwrap(), out_b.take().unwrap())),
            _ => Poll::Pending,
        }
    })
    .await
}

/// A pause of the given length.
pub(crate) struct Sleep {
    deadline: Instant,
    /// The waker the timer holds for this pause.
    registered: Option<Waker>,
}

impl Sleep {
    pub(crate) fn new(pause: Duration) -> Sleep {
        let now = Instant::now();
        Sleep {
            deadline: now.checked_add(pause).unwrap_or(now),
            registered: None,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        // A pause polled by another task than before: the timer wakes that one too.
        if !self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            if !timer().add(self.deadline, cx.waker().clone()) {
                // No timer thread: a pause that cannot wait ends at once.
                return Poll::Ready(());
            }
            self.registered = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Deadlines and whom to wake at each. Wakers of pauses dropped early are woken anyway, which
/// is harmless.
struct Timer {
    due: Mutex<BinaryHeap<Reverse<Due>>>,
    changed: Condvar,
}

struct Due(Instant, Waker);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// The process's timer, if its thread could start.
fn timer() -> &'static TimerHandle {
    static TIMER: OnceLock<TimerHandle> = OnceLock::new();
    TIMER.get_or_init(|| {
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            due: Mutex::new(BinaryHeap::new()),
            changed: Condvar::new(),
        }));
        let started = std::thread::Builder::new()
            .name("memcached-timer".into())
            .spawn(move || timer.run())
            .is_ok();
        TimerHandle(started.then_some(timer))
    })
}

struct TimerHandle(Option<&'static Timer>);

impl TimerHandle {
    /// Wakes `waker` at `deadline`; `false` if there is no timer thread.
    fn add(&self, deadline: Instant, waker: Waker) -> bool {
        let Some(timer) = self.0 else { return false };
        let mut due = timer.due.lock().unwrap_or_else(|p| p.into_inner());
        let earliest = due.peek().is_none_or(|Reverse(first)| deadline < first.0);
        due.push(Reverse(Due(deadline, waker)));
        drop(due);
        if earliest {
            timer.changed.notify_one();
        }
        true
    }
}

impl Timer {
    fn run(&self) {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let now = Instant::now();
            while due.peek().is_some_and(|Reverse(first)| first.0 <= now) {
                if let Some(Reverse(Due(_, waker))) = due.pop() {
                    waker.wake();
                }
            }
            due = match due.peek() {
                Some(Reverse(first)) => {
                    let wait = first.0 - now;
                    self.changed
                        .wait_timeout(due, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self.changed.wait(due).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `future` on this thread, parking between polls.
    fn block_on<T>(future: impl Future<Output = T>) -> T {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            std::thread::park();
        }
    }

    #[test]
    fn pauses_end_after_their_length_and_wake_their_task() {
        let started = Instant::now();
        let ((), ()) = block_on(join(
            Sleep::new(Duration::from_millis(30)),
            Sleep::new(Duration::from_millis(10)),
        ));
        assert!(started.elapsed() >= Duration::from_millis(30));
        // A pause too long to represent is not a panic.
        drop(Sleep::new(Duration::MAX));
    }

    #[test]
    fn join_gives_both_outputs() {
        assert_eq!(block_on(join(async { 1 }, async { "two" })), (1, "two"));
    }
}
