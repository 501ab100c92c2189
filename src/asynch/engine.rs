//! The engine: worker threads, each owning a clone of the client (its own connections), fed by
//! one bounded queue.
//!
//! A worker blocks on the queue. When it takes a get it also takes whatever else is already
//! queued, up to the batch cap, without waiting for more: the gets go into one multi-get, and
//! the other requests it took (writes, counters, multi-key calls...) run one by one afterwards,
//! in the order they were queued. A request whose caller has gone before a worker starts it is
//! never started (nothing was sent for it, so nothing happened); once started, a request is
//! finished whether or not its caller is still there, so a connection is never left in the
//! middle of a reply.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::client::Client;
use crate::error::{Error, Result, ReturnCode};
use crate::metrics::Group;

use super::batch::{Batch, GetRequest};
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
    /// Anything else, run alone.
    Run(Job),
}

/// The queue and the workers. Dropping it closes the queue (the workers serve what is left in
/// it and stop, dropping their clients and so closing their connections) and joins them.
pub(crate) struct Engine {
    // Fields drop in order: the queue closes before the workers are joined.
    pub(crate) queue: flume::Sender<Request>,
    pub(crate) counters: Arc<Counters>,
    /// The workers' clients' counters (see `AsyncClient::metrics`).
    pub(crate) metrics: Group,
    pub(crate) shape: Shape,
    _workers: Workers,
}

impl Engine {
    /// Starts `shape.workers` threads: the first uses `client`, the others clones of it.
    pub(crate) fn start(client: Client, shape: Shape) -> Result<Engine> {
        // Declared before the queue so that on an error the queue closes first and the
        // threads already started stop before they are joined.
        let mut workers = Workers(Vec::with_capacity(shape.workers));
        let (queue, requests) = flume::bounded(shape.queue_capacity);
        let counters = Arc::new(Counters::default());
        let mut clients = Vec::with_capacity(shape.workers);
        for _ in 1..shape.workers {
            clients.push(client.try_clone()?);
        }
        clients.push(client);
        let metrics = Group::default();
        // Workers report to the subscriber of the thread that started them.
        let subscriber = crate::trace::Subscriber::current();
        for (i, client) in clients.into_iter().enumerate() {
            metrics.join(&client.counters);
            let subscriber = subscriber.clone();
            let worker = Worker {
                client,
                requests: requests.clone(),
                counters: Arc::clone(&counters),
                max_batch: shape.max_batch,
            };
            let handle = thread::Builder::new()
                .name(format!("memcached-async-{i}"))
                .spawn(move || subscriber.within(|| worker.run()))
                .map_err(|err| Error::Memcached {
                    code: ReturnCode::Errno,
                    message: format!("cannot start an AsyncClient worker thread: {err}"),
                    server: None,
                })?;
            workers.0.push(handle);
        }
        Ok(Engine {
            queue,
            counters,
            metrics,
            shape,
            _workers: workers,
        })
    }
}

/// The worker threads, joined on drop.
struct Workers(Vec<JoinHandle<()>>);

impl Drop for Workers {
    fn drop(&mut self) {
        let me = thread::current().id();
        for handle in self.0.drain(..) {
            // A worker can only drop the last handle itself through user code it runs (a value
            // that owns the client); it cannot wait for its own end.
            if handle.thread().id() != me {
                // Workers catch the panics of the user code they run; a panic of the engine
                // itself has already failed its callers (their replies were dropped).
                let _ = handle.join();
            }
        }
    }
}

struct Worker {
    client: Client,
    requests: flume::Receiver<Request>,
    counters: Arc<Counters>,
    max_batch: usize,
}

impl Worker {
    fn run(self) {
        let mut batch = Batch::default();
        let mut later: VecDeque<Job> = VecDeque::new();
        // Ends once every handle is gone and the queue is empty.
        while let Ok(first) = self.requests.recv() {
            self.counters.depth(self.requests.len());
            let get = match first {
                Request::Run(job) => {
                    self.run_job(job);
                    continue;
                }
                Request::Get(get) => get,
            };
            batch.requests.push(get);
            // Everything already waiting, up to the cap; no waiting for more.
            for _ in 1..self.max_batch {
                match self.requests.try_recv() {
                    Ok(Request::Get(get)) => batch.requests.push(get),
                    Ok(Request::Run(job)) => later.push_back(job),
                    Err(_) => break,
                }
            }
            batch.serve(&self.client, &self.counters);
            while let Some(job) = later.pop_front() {
                self.run_job(job);
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
