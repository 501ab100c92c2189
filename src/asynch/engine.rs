//! The engine: lanes of worker threads, each worker owning a clone of the client (its own
//! connections), each lane fed by its own bounded queue.
//!
//! With several servers there is one lane per server, for the calls on one key that server
//! holds, and one shared lane for calls on many keys or on every server. A server that hangs
//! or fails holds up its own lane only: keys of the other servers never wait behind it.
//!
//! A worker blocks on its lane's queue. When it takes a get it also takes whatever else is
//! already queued, up to the batch cap, without waiting for more: the gets go into one
//! multi-get, and the other requests it took (writes, counters...) run one by one afterwards, in
//! the order they were queued. A request whose caller has gone before a worker starts it is
//! never started (nothing was sent for it, so nothing happened); once started, a request is
//! finished whether or not its caller is still there, so a connection is never left in the
//! middle of a reply.
//!
//! A worker outlives the client only to finish the call it is running: closing the queues (the
//! last handle dropped, or [`shutdown`](super::AsyncClient::shutdown)) makes it skip what is
//! queued for callers who have gone and stop. A panic in the engine's own code (user code
//! included: a value's `Drop` on the worker) fails the calls it was serving, resets the
//! worker's connections and the worker goes on.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::thread::{self, Thread};

use crate::client::Client;
use crate::error::{Error, Result, ReturnCode};
use crate::metrics::Group;

use super::batch::{Batch, GetRequest};
use super::queue::Queue;
use super::sets::{self, SetRequest};
use super::stats::{Counters, Shape};

/// A call other than a single-key get, made on a worker's client. It answers its caller
/// itself and says what became of the call.
pub(crate) type Job = Box<dyn FnOnce(&Client) -> Ran + Send>;

/// What became of a [`Job`].
pub(crate) enum Ran {
    /// It ran and its caller got the answer.
    Answered,
    /// It ran, and its caller had gone by the time it ended.
    Discarded,
    /// Its caller had gone before it started: it never ran.
    Abandoned,
}

/// What callers queue.
pub(crate) enum Request {
    /// A get, served in a batch with the other gets waiting.
    Get(GetRequest),
    /// A set, sent together with the other sets waiting.
    Set(SetRequest),
    /// Anything else, run alone.
    Run(Job),
}

/// The lanes and their workers. Dropping it closes the queues and returns at once: the workers
/// finish the calls they are running and stop, closing their connections.
pub(crate) struct Engine {
    /// One lane per server, then the shared lane (one lane in all with a single server).
    lanes: Box<[Arc<Queue<Request>>]>,
    /// A clone of the client that only maps keys to servers (with several servers).
    router: Option<Mutex<Client>>,
    pub(crate) counters: Arc<Counters>,
    /// The workers' clients' counters (see `AsyncClient::metrics`).
    pub(crate) metrics: Group,
    pub(crate) shape: Shape,
    pub(crate) workers: Arc<Alive>,
}

impl Engine {
    /// Starts `shape.workers` threads per lane: the first uses `client`, the others clones of
    /// it. Thread names start with `name`.
    pub(crate) fn start(client: Client, shape: Shape, name: &str) -> Result<Engine> {
        let servers = client.servers().len();
        let lanes = match servers {
            0 | 1 => 1,
            n => n + 1,
        };
        let shape = Shape { lanes, ..shape };
        let router = match lanes {
            1 => None,
            _ => Some(Mutex::new(client.try_clone()?)),
        };
        let mut clients = Vec::with_capacity(lanes * shape.workers);
        for _ in 1..lanes * shape.workers {
            clients.push(client.try_clone()?);
        }
        clients.push(client);
        let engine = Engine {
            lanes: (0..lanes)
                .map(|_| Arc::new(Queue::new(shape.queue_capacity)))
                .collect(),
            router,
            counters: Arc::new(Counters::default()),
            metrics: Group::default(),
            shape,
            workers: Arc::new(Alive::default()),
        };
        // Workers report to the subscriber of the thread that started them.
        let subscriber = crate::trace::Subscriber::current();
        for (i, client) in clients.into_iter().enumerate() {
            engine.metrics.join(&client.counters);
            let lane = i / shape.workers;
            let worker = Worker {
                client,
                requests: Arc::clone(&engine.lanes[lane]),
                counters: Arc::clone(&engine.counters),
                max_batch: shape.max_batch,
                _alive: Alive::count(&engine.workers),
            };
            let subscriber = subscriber.clone();
            // On an error the engine drops, closing the queues: the threads started stop.
            thread::Builder::new()
                .name(format!("{name}-{lane}.{}", i % shape.workers))
                .spawn(move || subscriber.within(|| worker.run()))
                .map_err(|err| Error::Memcached {
                    code: ReturnCode::Errno,
                    message: format!("cannot start an AsyncClient worker thread: {err}"),
                    key: None,
                    server: None,
                })?;
        }
        Ok(engine)
    }

    /// The queue of the lane that serves a call on `key` (on many keys, or none: `None`).
    pub(crate) fn lane(&self, key: Option<&[u8]>) -> &Arc<Queue<Request>> {
        let shared = self.lanes.len() - 1;
        let lane = match (key, &self.router) {
            (Some(key), Some(router)) => {
                let router = router.lock().unwrap_or_else(|p| p.into_inner());
                router.handle.server_index(key) % shared
            }
            _ => shared,
        };
        &self.lanes[lane]
    }

    /// Requests waiting in every lane.
    pub(crate) fn queued(&self) -> usize {
        self.lanes.iter().map(|lane| lane.len()).sum()
    }

    /// Stops taking calls; what is queued stays for the workers.
    pub(crate) fn close(&self) {
        self.lanes.iter().for_each(|lane| lane.close());
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lanes[0].is_closed()
    }

    /// The lanes, for a shutdown that outlives the handle.
    pub(crate) fn lanes(&self) -> Vec<Arc<Queue<Request>>> {
        self.lanes.to_vec()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}

/// Fails every call still queued in `lanes` (their callers get [`Error::Shutdown`]); returns
/// how many there were.
pub(crate) fn fail_queued(lanes: &[Arc<Queue<Request>>]) -> usize {
    let mut failed = 0;
    for lane in lanes {
        let requests = lane.take_all();
        failed += requests.len();
        // Dropping a request drops its caller's value: user code, which may panic.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(requests)));
    }
    failed
}

/// How many workers are running, and who waits for them all to stop.
#[derive(Default)]
pub(crate) struct Alive {
    state: Mutex<AliveState>,
}

#[derive(Default)]
struct AliveState {
    running: usize,
    /// The shutdowns waiting for the workers to stop.
    watchers: Vec<Watcher>,
    next_id: u64,
}

/// A shutdown waiting: who to wake, and its timer thread.
struct Watcher {
    id: u64,
    waker: Waker,
    timer: Option<Thread>,
}

impl Alive {
    fn lock(&self) -> MutexGuard<'_, AliveState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One more worker, counted until the returned guard drops (when its thread ends, however).
    fn count(this: &Arc<Alive>) -> Running {
        this.lock().running += 1;
        Running(Arc::clone(this))
    }

    pub(crate) fn running(&self) -> usize {
        self.lock().running
    }

    /// A number for a new shutdown to watch with.
    pub(crate) fn watcher_id(&self) -> u64 {
        let mut state = self.lock();
        state.next_id += 1;
        state.next_id
    }

    /// Registers whom to wake for shutdown `id` when the last worker stops (the waker of its
    /// latest poll) and its timer; says how many workers run now.
    pub(crate) fn watch(&self, id: u64, waker: &Waker, timer: Option<&Thread>) -> usize {
        let mut state = self.lock();
        if state.running > 0 {
            match state.watchers.iter_mut().find(|w| w.id == id) {
                Some(watcher) => watcher.waker.clone_from(waker),
                None => state.watchers.push(Watcher {
                    id,
                    waker: waker.clone(),
                    timer: timer.cloned(),
                }),
            }
        }
        state.running
    }

    /// Wakes shutdown `id` (its deadline has come).
    pub(crate) fn wake(&self, id: u64) {
        let waker = self
            .lock()
            .watchers
            .iter()
            .find(|w| w.id == id)
            .map(|w| w.waker.clone());
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Shutdown `id` is done or dropped: its timer may stop.
    pub(crate) fn forget(&self, id: u64) {
        let mut state = self.lock();
        if let Some(i) = state.watchers.iter().position(|w| w.id == id) {
            let watcher = state.watchers.swap_remove(i);
            drop(state);
            if let Some(timer) = watcher.timer {
                timer.unpark();
            }
        }
    }
}

/// A worker's place in [`Alive`].
struct Running(Arc<Alive>);

impl Drop for Running {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.running -= 1;
        if state.running == 0 {
            let watchers = std::mem::take(&mut state.watchers);
            drop(state);
            for watcher in watchers {
                watcher.waker.wake();
                if let Some(timer) = watcher.timer {
                    timer.unpark();
                }
            }
        }
    }
}

/// A request a worker took with a batch of gets, run after the multi-get.
enum Later {
    Run(Job),
    Set(SetRequest),
}

struct Worker {
    client: Client,
    requests: Arc<Queue<Request>>,
    counters: Arc<Counters>,
    max_batch: usize,
    _alive: Running,
}

impl Worker {
    /// Serves until the queue is closed and empty; after a panic, starts over with its
    /// connections reset (the panic's calls have failed: their replies were dropped).
    fn run(self) {
        while let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.serve())) {
            // Whatever panics here too (the payload's own `Drop`, a tracing subscriber) must
            // not end the thread: its lane would lose a worker for good.
            let worker = &self;
            let _ = catch_unwind(AssertUnwindSafe(move || {
                drop(panic);
                worker.counters.restarted();
                crate::trace::worker_restarted();
                worker.client.disconnect_all();
            }));
        }
    }

    fn serve(&self) {
        let mut batch = Batch::default();
        // The other requests taken with the gets, in queue order.
        let mut later: VecDeque<Later> = VecDeque::new();
        let mut sets = Vec::new();
        while let Some(first) = self.requests.pop() {
            self.counters.depth(self.requests.len());
            match first {
                Request::Run(job) => {
                    self.run_job(job);
                    continue;
                }
                Request::Get(get) => batch.requests.push(get),
                Request::Set(set) => later.push_back(Later::Set(set)),
            }
            // Everything already waiting, up to the cap; no waiting for more.
            self.requests
                .pop_more(self.max_batch - 1, |request| match request {
                    Request::Get(get) => batch.requests.push(get),
                    Request::Set(set) => later.push_back(Later::Set(set)),
                    Request::Run(job) => later.push_back(Later::Run(job)),
                });
            if !batch.requests.is_empty() {
                batch.serve(&self.client, &self.counters);
            }
            while let Some(request) = later.pop_front() {
                match request {
                    Later::Set(set) => {
                        // With the sets that follow it: they go out together.
                        sets.push(set);
                        while let Some(Later::Set(_)) = later.front() {
                            if let Some(Later::Set(set)) = later.pop_front() {
                                sets.push(set);
                            }
                        }
                        sets::serve(&self.client, &mut sets, &self.counters);
                    }
                    Later::Run(job) => self.run_job(job),
                }
            }
        }
    }

    fn run_job(&self, job: Job) {
        self.counters.served(1);
        match job(&self.client) {
            Ran::Answered => {}
            Ran::Discarded => self.counters.discarded(1),
            Ran::Abandoned => self.counters.abandoned(1),
        }
    }
}
