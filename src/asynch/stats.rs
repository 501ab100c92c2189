//! The engine's counters, kept with relaxed atomics (each is exact on its own; a snapshot taken
//! while calls run is not one instant), and [`EngineStats`], their snapshot.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// How many buckets [`EngineStats::batch_sizes`] has: batches of 1, 2–3, 4–7, ..., 512–1023
/// and 1024 or more distinct keys.
pub(crate) const BATCH_BUCKETS: usize = 11;

/// The counters the workers and callers update.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    gets: AtomicU64,
    batches: AtomicU64,
    batch_keys: AtomicU64,
    max_batch_keys: AtomicUsize,
    batch_sizes: [AtomicU64; BATCH_BUCKETS],
    max_queue_depth: AtomicUsize,
    queue_full_waits: AtomicU64,
    abandoned: AtomicU64,
    discarded: AtomicU64,
    restarts: AtomicU64,
    sets: AtomicU64,
    set_batches: AtomicU64,
}

impl Counters {
    /// A worker served `n` requests (answered or discarded).
    pub(crate) fn served(&self, n: usize) {
        self.requests.fetch_add(n as u64, Relaxed);
    }

    /// A worker served `gets` get requests with one call for `keys` distinct keys.
    pub(crate) fn batch(&self, gets: usize, keys: usize) {
        self.gets.fetch_add(gets as u64, Relaxed);
        self.batches.fetch_add(1, Relaxed);
        self.batch_keys.fetch_add(keys as u64, Relaxed);
        self.max_batch_keys.fetch_max(keys, Relaxed);
        self.batch_sizes[bucket(keys)].fetch_add(1, Relaxed);
    }

    /// A worker sent `sets` sets taken together.
    pub(crate) fn set_batch(&self, sets: usize) {
        self.sets.fetch_add(sets as u64, Relaxed);
        self.set_batches.fetch_add(1, Relaxed);
    }

    /// A worker saw `depth` requests waiting as it took one.
    pub(crate) fn depth(&self, depth: usize) {
        self.max_queue_depth.fetch_max(depth, Relaxed);
    }

    /// A caller found the queue full and waited for room.
    pub(crate) fn full_wait(&self) {
        self.queue_full_waits.fetch_add(1, Relaxed);
    }

    /// `n` calls were never started because their callers had gone.
    pub(crate) fn abandoned(&self, n: usize) {
        self.abandoned.fetch_add(n as u64, Relaxed);
    }

    /// `n` answers found no caller waiting.
    pub(crate) fn discarded(&self, n: usize) {
        if n > 0 {
            self.discarded.fetch_add(n as u64, Relaxed);
        }
    }

    /// A worker panicked and started over.
    pub(crate) fn restarted(&self) {
        self.restarts.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(
        &self,
        shape: Shape,
        queue_depth: usize,
        workers_running: usize,
    ) -> EngineStats {
        EngineStats {
            lanes: shape.lanes,
            workers: shape.workers,
            workers_running,
            restarts: self.restarts.load(Relaxed),
            queue_capacity: shape.queue_capacity,
            max_batch: shape.max_batch,
            queue_depth,
            max_queue_depth: self.max_queue_depth.load(Relaxed),
            queue_full_waits: self.queue_full_waits.load(Relaxed),
            requests: self.requests.load(Relaxed),
            gets: self.gets.load(Relaxed),
            batches: self.batches.load(Relaxed),
            batch_keys: self.batch_keys.load(Relaxed),
            max_batch_keys: self.max_batch_keys.load(Relaxed),
            batch_sizes: std::array::from_fn(|i| self.batch_sizes[i].load(Relaxed)),
            abandoned: self.abandoned.load(Relaxed),
            discarded: self.discarded.load(Relaxed),
            sets: self.sets.load(Relaxed),
            set_batches: self.set_batches.load(Relaxed),
        }
    }
}

/// The engine's fixed settings, repeated in each snapshot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub lanes: usize,
    pub workers: usize,
    pub queue_capacity: usize,
    pub max_batch: usize,
}

/// The bucket of a batch of `keys` distinct keys: `floor(log2(keys))`, capped.
fn bucket(keys: usize) -> usize {
    let log = usize::BITS - 1 - keys.max(1).leading_zeros();
    (log as usize).min(BATCH_BUCKETS - 1)
}

/// A snapshot of an [`AsyncClient`](crate::AsyncClient)'s engine, from
/// [`AsyncClient::engine_stats`](crate::AsyncClient::engine_stats): what to look at when tuning
/// the number of workers, the batch cap and the queue.
///
/// Counters count from the client's start, over all its handles.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineStats {
    /// Lanes: one per server and a shared one, or one with a single server.
    pub lanes: usize,
    /// Worker threads per lane, each with its own connections.
    pub workers: usize,
    /// Worker threads running now: `lanes * workers` until the client stops.
    pub workers_running: usize,
    /// Times a worker panicked (in the engine's code or in user code it ran outside a call,
    /// such as the `Drop` of a value whose caller had gone), failed the calls it was serving
    /// and started over with fresh connections.
    pub restarts: u64,
    /// How many requests each lane's queue holds before callers wait.
    pub queue_capacity: usize,
    /// The most requests a worker takes from its queue at once.
    pub max_batch: usize,
    /// Requests in the queues now.
    pub queue_depth: usize,
    /// The most requests a worker saw waiting as it took one (at most `queue_capacity`).
    pub max_queue_depth: usize,
    /// Calls that found the queue full and waited for room (backpressure).
    pub queue_full_waits: u64,
    /// Requests the workers served, answered or discarded.
    pub requests: u64,
    /// Single-key gets served, merged or alone (included in `requests`).
    pub gets: u64,
    /// Calls the workers made to serve those gets: one multi-get per batch (or one get for a
    /// batch of one).
    pub batches: u64,
    /// Distinct keys asked for in those calls: `gets - batch_keys` gets were answered by another
    /// caller's request for the same key.
    pub batch_keys: u64,
    /// The most distinct keys in one batch.
    pub max_batch_keys: usize,
    /// Batches by distinct keys, in powers of two: `batch_sizes[i]` counts batches of `2^i` to
    /// `2^(i+1) - 1` keys (the last bucket: that many or more); see
    /// [`EngineStats::batch_size_buckets`].
    pub batch_sizes: [u64; BATCH_BUCKETS],
    /// Calls never started (nothing sent) because their future was dropped before a worker
    /// reached them.
    pub abandoned: u64,
    /// Answers thrown away because their future was dropped while the call ran.
    pub discarded: u64,
    /// Sets served (included in `requests`), taken together or alone; a value that failed to
    /// encode counts, a set whose caller had gone does not.
    pub sets: u64,
    /// Times a worker sent the sets it had taken together (each server's in one round trip):
    /// `sets / set_batches` sets per batch, on average.
    pub set_batches: u64,
}

impl EngineStats {
    /// Distinct keys per batch, on average (0 before the first batch).
    pub fn mean_batch_keys(&self) -> f64 {
        match self.batches {
            0 => 0.0,
            n => self.batch_keys as f64 / n as f64,
        }
    }

    /// [`EngineStats::batch_sizes`] with each bucket's range of keys: `(1..=1, n)`,
    /// `(2..=3, n)`, ..., the last ending at `usize::MAX`.
    pub fn batch_size_buckets(&self) -> impl Iterator<Item = (RangeInclusive<usize>, u64)> + '_ {
        self.batch_sizes.iter().enumerate().map(|(i, &n)| {
            let low = 1usize << i;
            let high = match i + 1 == BATCH_BUCKETS {
                true => usize::MAX,
                false => (low << 1) - 1,
            };
            (low..=high, n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(3), 1);
        assert_eq!(bucket(4), 2);
        assert_eq!(bucket(511), 8);
        assert_eq!(bucket(512), 9);
        assert_eq!(bucket(1 << 20), BATCH_BUCKETS - 1);
    }

    #[test]
    fn snapshot_reads_every_counter() {
        let counters = Counters::default();
        counters.batch(5, 3);
        counters.batch(1, 1);
        counters.served(6);
        counters.depth(4);
        counters.depth(2);
        counters.full_wait();
        counters.abandoned(2);
        counters.discarded(1);
        counters.restarted();
        counters.set_batch(3);
        let shape = Shape {
            lanes: 4,
            workers: 2,
            queue_capacity: 8,
            max_batch: 16,
        };
        let stats = counters.snapshot(shape, 1, 7);
        assert_eq!(
            (stats.lanes, stats.workers_running, stats.restarts),
            (4, 7, 1)
        );
        assert_eq!((stats.gets, stats.batches, stats.batch_keys), (6, 2, 4));
        assert_eq!((stats.max_batch_keys, stats.max_queue_depth), (3, 4));
        assert_eq!((stats.requests, stats.queue_full_waits), (6, 1));
        assert_eq!(
            (stats.abandoned, stats.discarded, stats.queue_depth),
            (2, 1, 1)
        );
        assert_eq!((stats.sets, stats.set_batches), (3, 1));
        assert_eq!(stats.mean_batch_keys(), 2.0);
        let buckets: Vec<_> = stats.batch_size_buckets().take(3).collect();
        assert_eq!(buckets, vec![(1..=1, 1), (2..=3, 1), (4..=7, 0)]);
        let last = stats.batch_size_buckets().last().unwrap();
        assert_eq!(last.0, 1024..=usize::MAX);
    }
}
