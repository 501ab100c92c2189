//! Waiting for an answer on a quiet client: a call alone in flight polls again at once, for a
//! short while, before its task sleeps.
//!
//! Answers come from worker threads. A runtime thread with nothing to run sleeps, and on a
//! virtual machine waking a sleeping thread costs about as much as a loopback round trip: the
//! two hops through a worker made a lone `get` 0.75× as fast as the blocking client's. So
//! while a call is the only one in flight, its future asks to be polled again after each poll,
//! up to the client's spin time: its runtime thread stays awake, runs whatever else is ready in
//! between, and takes the answer as soon as it comes. With more calls in flight, their answers
//! keep the runtime busy and every caller sleeps at once.
//!
//! Spinning pays only if answers come within the spin time. Calls that spin measure how long
//! their answers take (a wait that sleeps is longer by the very wake-up it is measured for); while
//! those waits average more than the spin time (a slow network, a hung server), lone calls sleep
//! at once, but one in [`PROBE_EVERY`] spins anyway, so that quicker answers bring the average
//! back under it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::Context;
use std::time::{Duration, Instant};

/// While spinning does not pay, one lone call in this many spins anyway, to measure again.
const PROBE_EVERY: u64 = 8;
/// The longest wait one answer counts for in the average, in spin times: a hung server's
/// five-second timeout turns spinning off, and a few quick answers turn it back on.
const LONGEST_WAIT: u32 = 4;

/// The calls of one client that are queued and not yet answered, and how long a lone one
/// spins.
#[derive(Debug)]
pub(crate) struct Spin {
    in_flight: AtomicUsize,
    limit: Duration,
    /// How long spinning lone calls have been waiting for their answers lately, in
    /// nanoseconds: a moving average, each answer weighing an eighth.
    lone_wait_ns: AtomicU64,
    /// Lone calls so far.
    lone_calls: AtomicU64,
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

    /// Counts a call queued, until the returned guard drops.
    pub(crate) fn queued(this: &Arc<Spin>) -> InFlight {
        this.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            spin: Arc::clone(this),
            lone_wait: None,
            spins: false,
        }
    }
}

/// A call in flight: queued, not yet answered.
#[derive(Debug)]
pub(crate) struct InFlight {
    spin: Arc<Spin>,
    /// When the call, alone in flight, first found its answer not ready.
    lone_wait: Option<Instant>,
    /// Whether it spins, decided then.
    spins: bool,
}

impl InFlight {
    /// The answer was not ready: asks for another poll at once if the call is alone in flight,
    /// spinning pays (or it is a probe), and it has not spun its limit yet.
    pub(crate) fn not_ready(&mut self, cx: &Context<'_>) {
        let spin = &*self.spin;
        let alone = spin.in_flight.load(Ordering::Relaxed) == 1;
        let since = match self.lone_wait {
            Some(since) => since,
            None if alone && !spin.limit.is_zero() => {
                let now = Instant::now();
                self.lone_wait = Some(now);
                let probe = spin.lone_calls.fetch_add(1, Ordering::Relaxed) % PROBE_EVERY == 0;
                self.spins = probe || spin.lone_wait_ns.load(Ordering::Relaxed) < nanos(spin.limit);
                now
            }
            None => return,
        };
        if self.spins && alone && since.elapsed() < spin.limit {
            cx.waker().wake_by_ref();
        }
    }

    /// The answer came: a call that spun adds how long it waited to the average.
    pub(crate) fn answered(&self) {
        if let (Some(since), true) = (self.lone_wait, self.spins) {
            let longest = self.spin.limit.saturating_mul(LONGEST_WAIT);
            let waited = nanos(since.elapsed().min(longest));
            // Two updates at once (rare: calls that were each alone when they started waiting)
            // may lose one answer's weight, which is harmless.
            let average = &self.spin.lone_wait_ns;
            let before = average.load(Ordering::Relaxed);
            average.store(before - before / 8 + waited / 8, Ordering::Relaxed);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.spin.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
