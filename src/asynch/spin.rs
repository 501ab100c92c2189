//! Waiting for an answer on a quiet client: a call alone in flight polls again at once, for a
//! short while, before its task sleeps.
//!
//! Answers come from worker threads. A runtime thread with nothing to run sleeps, and on a
//! virtual machine waking a sleeping thread costs about as much as a loopback round trip: the
//! two hops through a worker made a lone `get` about 0.8× as fast as the blocking client's. So
//! while a call is the only one in flight, its future asks to be polled again after each poll,
//! up to the client's spin time: its runtime thread stays awake, runs whatever else is ready in
//! between, and takes the answer as soon as it comes. With more calls in flight, their answers
//! keep the runtime busy and every caller sleeps at once.
//!
//! Spinning pays only if answers come within the spin time. Calls that spin to their end (their
//! answer, or their caller giving up past the spin time) measure how long they waited: a wait
//! that sleeps is longer by the very wake-up it would measure. While those waits average more
//! than the spin time (a slow network, a hung server: a few such waits), lone calls sleep at
//! once, but one in [`PROBE_EVERY`] spins anyway, so that quicker answers bring the average back
//! under it (about a dozen quick probes after a hung server). The average is the client's,
//! across its servers.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::Context;
use std::time::{Duration, Instant};

/// While spinning does not pay, one lone call in this many spins anyway, to measure again.
const PROBE_EVERY: u64 = 8;
/// The longest wait one call counts for in the average, in spin times, so that one hung call
/// does not turn spinning off for long.
const LONGEST_WAIT: u32 = 4;

/// A client's calls in flight (queued, not yet answered or dropped) and how long a lone one
/// spins.
#[derive(Debug)]
pub(crate) struct Spin {
    in_flight: AtomicUsize,
    limit: Duration,
    /// How long calls that spun waited lately, in nanoseconds: a moving average, each wait
    /// weighing an eighth.
    lone_wait_ns: AtomicU64,
    /// Lone calls so far.
    lone_calls: AtomicU64,
}

/// One call's wait, from [`Spin::queued`] to [`Spin::done`].
#[derive(Debug, Default)]
pub(crate) struct Wait {
    /// When the call, alone in flight, first found its answer not ready.
    lone_since: Option<Instant>,
    /// Whether it spins: decided then, and cleared once another call is in flight.
    spins: bool,
    /// Whether its answer came (or else its caller gave up).
    pub(crate) answered: bool,
}

impl Spin {
    pub(crate) fn new(limit: Duration) -> Spin {
        Spin {
            in_flight: AtomicUsize::new(0),
            limit,
            lone_wait_ns: AtomicU64::new(0),
            lone_calls: AtomicU64::new(0),
        }
    }

    /// A call was queued: counted in flight until [`Spin::done`].
    pub(crate) fn queued(&self) -> Wait {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Wait::default()
    }

    /// The call's answer was not ready: asks for another poll at once if it spins.
    pub(crate) fn not_ready(&self, wait: &mut Wait, cx: &Context<'_>) {
        if self.keeps_polling(wait, Instant::now) {
            cx.waker().wake_by_ref();
        }
    }

    /// The call was answered, or dropped: no longer in flight. One that spun to its end adds
    /// its wait to the average (a caller that gave up within the spin time says nothing of
    /// how long answers take).
    pub(crate) fn done(&self, wait: &Wait) {
        self.finished(wait, Instant::now);
    }

    /// The clock is read (`now`) only for a call that waits alone: with many calls in flight,
    /// polls and drops cost no more than an atomic load and decrement.
    fn keeps_polling(&self, wait: &mut Wait, now: impl Fn() -> Instant) -> bool {
        let alone = self.in_flight.load(Ordering::Relaxed) == 1;
        if wait.lone_since.is_none() {
            if !alone || self.limit.is_zero() {
                return false;
            }
            let probe = self.lone_calls.fetch_add(1, Ordering::Relaxed) % PROBE_EVERY == 0;
            wait.spins = probe || self.lone_wait_ns.load(Ordering::Relaxed) < nanos(self.limit);
            wait.lone_since = Some(now());
        }
        // Another call's answer will keep the runtime awake; and this wait no longer says what
        // spinning alone costs.
        wait.spins &= alone;
        wait.spins
            && wait
                .lone_since
                .is_some_and(|since| now().saturating_duration_since(since) < self.limit)
    }

    fn finished(&self, wait: &Wait, now: impl Fn() -> Instant) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let Some(since) = wait.lone_since.filter(|_| wait.spins) else {
            return;
        };
        let waited = now().saturating_duration_since(since);
        if wait.answered || waited >= self.limit {
            let waited = nanos(waited.min(self.limit.saturating_mul(LONGEST_WAIT)));
            // Two updates at once (rare: calls that were each alone when they started waiting)
            // may lose one wait's weight, which is harmless.
            let before = self.lone_wait_ns.load(Ordering::Relaxed);
            self.lone_wait_ns
                .store(before - before / 8 + waited / 8, Ordering::Relaxed);
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A lone call that first waits at `start` and is answered `waited` later: did it spin?
    fn lone_call(spin: &Spin, start: Instant, waited: Duration) -> bool {
        let mut wait = spin.queued();
        let spun = spin.keeps_polling(&mut wait, || start);
        wait.answered = true;
        spin.finished(&wait, || start + waited);
        spun
    }

    #[test]
    fn a_lone_call_spins_up_to_the_limit_and_only_while_alone() {
        let spin = Spin::new(10 * MS);
        let start = Instant::now();
        let mut lone = spin.queued();
        assert!(spin.keeps_polling(&mut lone, || start));
        assert!(spin.keeps_polling(&mut lone, || start + 9 * MS));
        assert!(!spin.keeps_polling(&mut lone, || start + 10 * MS));
        spin.finished(&lone, || start + 10 * MS);

        let mut first = spin.queued();
        assert!(spin.keeps_polling(&mut first, || start));
        let second = spin.queued();
        assert!(!spin.keeps_polling(&mut first, || start + MS), "not alone");
        spin.finished(&second, || start + MS);
        assert!(
            !spin.keeps_polling(&mut first, || start + 2 * MS),
            "stopped for good"
        );
        spin.finished(&first, || start + 2 * MS);
        assert_eq!(spin.in_flight.load(Ordering::Relaxed), 0);

        let off = Spin::new(Duration::ZERO);
        let mut wait = off.queued();
        assert!(!off.keeps_polling(&mut wait, || start));
    }

    #[test]
    fn slow_waits_turn_spinning_off_but_for_probes_and_quick_ones_turn_it_back_on() {
        let spin = Spin::new(10 * MS);
        let start = Instant::now();
        // Three waits far past the limit (a hung server, callers timing out) turn it off...
        for _ in 0..3 {
            assert!(lone_call(&spin, start, 5000 * MS));
        }
        // ...but for one lone call in eight, which measures again.
        let spun = (0..PROBE_EVERY).filter(|_| lone_call(&spin, start, 50 * MS));
        assert_eq!(spun.count(), 1);
        // Quick answers to the probes bring the average back under the limit: about ten.
        let calls = (1..=200).find(|_| {
            lone_call(&spin, start, MS / 10);
            spin.lone_wait_ns.load(Ordering::Relaxed) < nanos(10 * MS)
        });
        assert!(calls.is_some_and(|n| n <= 15 * PROBE_EVERY), "{calls:?}");
        assert!(lone_call(&spin, start, MS) && lone_call(&spin, start, MS));
    }

    #[test]
    fn waits_that_stopped_spinning_or_never_spun_are_not_counted() {
        let spin = Spin::new(10 * MS);
        let start = Instant::now();
        // A call that gets company sleeps: its long wait says nothing of spinning alone.
        let mut first = spin.queued();
        assert!(spin.keeps_polling(&mut first, || start));
        let second = spin.queued();
        assert!(!spin.keeps_polling(&mut first, || start));
        spin.finished(&second, || start);
        spin.finished(&first, || start + 5000 * MS);
        assert_eq!(spin.lone_wait_ns.load(Ordering::Relaxed), 0);
        // Nor does a call that never waited alone.
        let (a, mut b) = (spin.queued(), spin.queued());
        assert!(!spin.keeps_polling(&mut b, || start));
        spin.finished(&a, || start);
        spin.finished(&b, || start + 5000 * MS);
        assert_eq!(spin.lone_wait_ns.load(Ordering::Relaxed), 0);
        // Nor a caller that gave up within the spin time (a `select!` that went another way).
        let mut dropped = spin.queued();
        assert!(spin.keeps_polling(&mut dropped, || start));
        spin.finished(&dropped, || start + MS);
        assert_eq!(spin.lone_wait_ns.load(Ordering::Relaxed), 0);
        // But one that gave up past it did wait that long.
        let mut dropped = spin.queued();
        assert!(spin.keeps_polling(&mut dropped, || start));
        spin.finished(&dropped, || start + 20 * MS);
        assert_eq!(
            spin.lone_wait_ns.load(Ordering::Relaxed),
            nanos(20 * MS) / 8
        );
    }

    #[test]
    fn huge_limits_and_waits_do_not_overflow() {
        let spin = Spin::new(Duration::MAX);
        let start = Instant::now();
        assert!(lone_call(&spin, start, Duration::from_secs(1 << 40)));
        assert!(lone_call(&spin, start, Duration::from_secs(1 << 40)));
    }
}
