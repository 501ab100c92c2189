//! [`AsyncClient`], its builder, and [`AsyncCall`], the future every call returns.

use std::fmt;
use std::future::Future;
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use crate::client::Client;
use crate::error::{ConfigError, Error, Result};
use crate::expiration::Expiration;
use crate::key;
use crate::server::Address;
use crate::value::{FromValue, ToValue};

use super::batch::{GetRequest, Outcome};
use super::engine::{self, Alive, Engine, Job, Ran, Request};
use super::ops::ready_value;
use super::queue::{Push, Queue, Refused};
use super::sets::SetRequest;
use super::spin::{Spin, Wait};
use super::stats::{EngineStats, Shape};

/// Worker threads per lane unless [`AsyncClientBuilder::workers`] says otherwise: two keep one
/// worker building a batch while the other waits for the server.
pub const DEFAULT_WORKERS: usize = 2;
/// Requests one worker takes at once unless [`AsyncClientBuilder::max_batch`] says otherwise.
pub const DEFAULT_MAX_BATCH: usize = 512;
/// Requests each lane's queue holds unless [`AsyncClientBuilder::queue_capacity`] says
/// otherwise.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// How long a call alone in flight keeps its task polling for the answer unless
/// [`AsyncClientBuilder::spin`] says otherwise (on a machine with more than one CPU): a few
/// loopback round trips.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(200);

/// An async memcached client that merges concurrent gets into multi-gets.
///
/// Made from a configured [`Client`] (its servers, behaviors, SASL credentials, namespace and
/// compression carry over), it serves every call on a few worker threads, each with its own
/// clone of the client and so its own connections. It has no runtime of its own: its futures
/// complete when a worker answers, under any executor (tokio, async-std, a plain `block_on`).
///
/// With several servers, the workers form one lane per server, for calls on one key that server
/// holds, and a shared lane for calls on many keys or on every server: a server that hangs or
/// fails delays only its own keys' calls. [`get`](AsyncClient::get)s waiting in a lane when a
/// worker takes one are served together by one multi-get: the more concurrent callers, the
/// fewer round trips per key. Everything else runs as the blocking client runs it, one call at
/// a time per worker.
///
/// The handle is cheap to clone and `Send + Sync`, and each call's future holds a handle of its
/// own (it borrows nothing: `tokio::spawn(mc.get::<String>("k"))` works). Dropping the last
/// handle closes the queues and returns at once: each worker finishes the call it is running,
/// if any, closes its connections and stops ([`shutdown`](AsyncClient::shutdown) waits for
/// that). Dropping a call's future at any point is safe: a call no worker has started yet is never started (a
/// write that was not sent did not happen), and a call a worker has started is finished and
/// its answer thrown away, so a timeout around a call (`tokio::time::timeout(d, mc.get(..))`)
/// never leaves a connection out of step.
///
/// ```no_run
/// # async fn demo() -> Result<(), libmemcached::Error> {
/// use libmemcached::{AsyncClient, Client};
///
/// let mc = AsyncClient::new(Client::new(["127.0.0.1:11211"])?)?;
/// mc.set("greeting", "hello", 0).await?;
/// let s: Option<String> = mc.get("greeting").await?;
/// assert_eq!(s.as_deref(), Some("hello"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AsyncClient {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    /// The key rules of the client, so that a bad key fails before it is queued.
    rules: key::Rules,
    servers: Vec<Address>,
    binary: bool,
    /// The `get_or_set_with` loads in flight.
    flights: Arc<crate::cache_aside::Flights>,
    /// What `get_or_set_with` counts (loads run in the callers' tasks, not on the workers),
    /// part of the engine's metrics group.
    load_counters: Arc<crate::metrics::Counters>,
    /// The calls in flight, and how long a lone one spins.
    spin: Spin,
}

impl AsyncClient {
    /// An async client serving calls with `client` and its clones, with the default number of
    /// workers, batch cap and queue capacity.
    pub fn new(client: Client) -> Result<AsyncClient> {
        AsyncClient::builder(client).build()
    }

    /// A builder to set the number of workers, the batch cap and the queue capacity.
    pub fn builder(client: Client) -> AsyncClientBuilder {
        AsyncClientBuilder {
            client,
            workers: DEFAULT_WORKERS,
            max_batch: DEFAULT_MAX_BATCH,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            thread_name: "memcached-async".into(),
            // With one CPU, a spinning caller would take it from the worker it waits for.
            spin: match thread::available_parallelism().map_or(1, |n| n.get()) {
                1 => Duration::ZERO,
                _ => DEFAULT_SPIN,
            },
        }
    }

    /// The value of `key`, or `None` if it is not there, as [`Client::get`] gives it.
    ///
    /// Gets queued together are served by one multi-get, each key asked once however many
    /// callers want it; each caller gets its own key's value decoded into its own type, a
    /// miss, or the error of the server that holds its key. A bad key fails at once, before
    /// anything is queued.
    pub fn get<V: FromValue + Send + 'static>(
        &self,
        key: impl AsRef<[u8]>,
    ) -> AsyncCall<Option<V>> {
        let key = key.as_ref();
        if let Err(error) = self.inner.rules.check(key) {
            return AsyncCall::failed(error);
        }
        let (reply, answer) = oneshot::channel::<Outcome<Option<V>>>();
        let request = Request::Get(GetRequest {
            key: key.into(),
            waiter: Box::new(reply),
        });
        AsyncCall::queue(&self.inner, self.lane(Some(key)), request, answer)
    }

    /// Stores `value` under `key`: [`Client::set`].
    ///
    /// Sets queued together go out together, one round trip per server, on a connection of
    /// their own that speaks the binary protocol (see
    /// [`ClientBuilder::sets_together`](crate::ClientBuilder::sets_together): on by default for
    /// a binary client), and each caller gets its own set's answer: stored, or the error of the
    /// server that holds its key. A bad key, or a value that does not serialize, fails at once,
    /// before anything is queued.
    pub fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue,
        exp: impl Into<Expiration>,
    ) -> AsyncCall<()> {
        let key = key.as_ref();
        if let Err(error) = self.inner.rules.check(key) {
            return AsyncCall::failed(error);
        }
        let value = match ready_value(value) {
            Ok(value) => value,
            Err(error) => return AsyncCall::failed(error),
        };
        let (reply, answer) = oneshot::channel::<Outcome<()>>();
        let request = Request::Set(SetRequest {
            key: key.into(),
            value,
            exp: exp.into(),
            reply,
        });
        AsyncCall::queue(&self.inner, self.lane(Some(key)), request, answer)
    }

    /// The sum of the metrics of the workers' clients (see
    /// [`Client::metrics`](crate::Client::metrics)). Gets merged into one multi-get count as
    /// one operation; hits and misses are per key.
    pub fn metrics(&self) -> crate::Metrics {
        self.inner.engine.metrics.snapshot()
    }

    /// What the engine has done so far: batches, keys per batch, queue depth, requests served,
    /// workers running and restarted.
    pub fn engine_stats(&self) -> EngineStats {
        let engine = &self.inner.engine;
        let running = engine.workers.running();
        engine
            .counters
            .snapshot(engine.shape, engine.queued(), running)
    }

    /// Stops the client for every handle and waits, at most `timeout`, for its workers to
    /// stop, without blocking the thread that awaits it.
    ///
    /// New calls fail with [`Error::Shutdown`] at once. Calls already queued are served while
    /// there is time; those still queued at the deadline fail with [`Error::Shutdown`] (nothing
    /// was sent for them). A call a worker is running is not interrupted: it ends within the
    /// client's timeouts, and [`ShutdownReport::workers_running`] says how many were still at it.
    pub fn shutdown(self, timeout: Duration) -> ShuttingDown {
        let engine = &self.inner.engine;
        engine.close();
        ShuttingDown {
            lanes: engine.lanes(),
            workers: Arc::clone(&engine.workers),
            id: engine.workers.watcher_id(),
            deadline: Instant::now().checked_add(timeout),
            timer: None,
        }
    }

    /// The servers, as the client was configured.
    pub fn servers(&self) -> &[Address] {
        &self.inner.servers
    }

    /// Whether the binary protocol is on.
    pub fn is_binary(&self) -> bool {
        self.inner.binary
    }

    /// Checks `key` against the client's rules.
    pub(super) fn check_key(&self, key: &[u8]) -> Result<()> {
        self.inner.rules.check(key)
    }

    /// The `get_or_set_with` loads in flight.
    pub(super) fn flights(&self) -> &Arc<crate::cache_aside::Flights> {
        &self.inner.flights
    }

    /// Where `get_or_set_with` counts its loads and waits.
    pub(super) fn load_counters(&self) -> &crate::metrics::Counters {
        &self.inner.load_counters
    }

    /// The lane that serves calls on `key` (calls on many keys, or on none: `None`).
    pub(super) fn lane(&self, key: Option<&[u8]>) -> &Arc<Queue<Request>> {
        self.inner.engine.lane(key)
    }

    /// Queues `op` to run on a worker's client of `lane`.
    pub(super) fn call<T: Send + 'static>(
        &self,
        lane: &Arc<Queue<Request>>,
        op: impl FnOnce(&Client) -> Result<T> + Send + 'static,
    ) -> AsyncCall<T> {
        let (reply, answer) = oneshot::channel::<Outcome<T>>();
        let job: Job = Box::new(move |client| {
            // A caller that has gone before its call starts never sees it happen: nothing is
            // sent (a write nobody waits for is not done).
            if reply.is_canceled() {
                return Ran::Abandoned;
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| op(client)));
            match reply.send(outcome) {
                Ok(()) => Ran::Answered,
                Err(_) => Ran::Discarded,
            }
        });
        AsyncCall::queue(&self.inner, lane, Request::Run(job), answer)
    }
}

impl fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self.servers().iter().map(Address::to_string).collect();
        f.debug_struct("AsyncClient")
            .field("servers", &servers)
            .field("binary", &self.is_binary())
            .field("lanes", &self.inner.engine.shape.lanes)
            .field("workers", &self.inner.engine.shape.workers)
            .finish()
    }
}

/// Options for an [`AsyncClient`], from [`AsyncClient::builder`].
#[derive(Debug)]
#[must_use]
pub struct AsyncClientBuilder {
    client: Client,
    workers: usize,
    max_batch: usize,
    queue_capacity: usize,
    thread_name: String,
    spin: Duration,
}

impl AsyncClientBuilder {
    /// Worker threads per lane, each with its own connections (default [`DEFAULT_WORKERS`]).
    /// More workers run more writes and batches at once. There is one lane with a single
    /// server; with `n` servers, `n + 1`.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// The most requests a worker takes from the queue at once, and so the most gets in one
    /// multi-get (default [`DEFAULT_MAX_BATCH`]). `1` turns merging off: every get is a get of
    /// its own.
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// How many requests wait in each lane's queue before callers wait for room,
    /// asynchronously (default [`DEFAULT_QUEUE_CAPACITY`]).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// How long a call alone in flight keeps its task polling for its answer before the task
    /// sleeps (default [`DEFAULT_SPIN`], or [`Duration::ZERO`] on a machine, or in a container,
    /// with one CPU; `Duration::ZERO` never spins).
    ///
    /// A runtime thread with nothing else to run sleeps, and the worker's wake-up of a sleeping
    /// thread can cost as much as the round trip itself: a lone call's future therefore asks to
    /// be polled again after each poll, up to this long. It never blocks: the runtime thread
    /// runs any other task that is ready in between. Only a call alone in flight spins (queued,
    /// its answer not yet taken; with more, their answers keep the runtime awake), and only
    /// while calls that spun waited less than this on average: when answers take longer (a
    /// slow network, a hung server, callers giving up past this time), lone calls sleep at
    /// once, but for one in eight that measures again.
    ///
    /// The cost is CPU time: up to this much per call, on a client that is otherwise idle, so
    /// a task that makes one call after another keeps a core busy while it waits, and under
    /// CPU contention spinning can make the slowest calls slower. Longer than a few round
    /// trips, it only burns more. A call's future that is polled once and then left unpolled
    /// stays in flight: no other call is alone until it is dropped.
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// The start of the worker threads' names (default `memcached-async`), followed by the
    /// lane and the worker's number in it: `memcached-async-0.1`.
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// Clones the client for each worker but the first and starts the workers.
    pub fn build(self) -> Result<AsyncClient> {
        for (name, value) in [
            ("workers", self.workers),
            ("max_batch", self.max_batch),
            ("queue_capacity", self.queue_capacity),
        ] {
            if value == 0 {
                return Err(ConfigError::setting(
                    name,
                    "an AsyncClient needs at least 1",
                ));
            }
        }
        let rules = self.client.key_rules();
        let servers = self.client.servers();
        let binary = self.client.is_binary();
        // Its own loads in flight, not the client's: a blocking caller must never wait for a
        // load that runs in an async task (on a current-thread runtime, it would wait forever).
        let flights = Arc::default();
        let shape = Shape {
            lanes: 1,
            workers: self.workers,
            queue_capacity: self.queue_capacity,
            max_batch: self.max_batch,
        };
        let engine = Engine::start(self.client, shape, &self.thread_name)?;
        let load_counters = crate::metrics::Counters::new();
        engine.metrics.join(&load_counters);
        Ok(AsyncClient {
            inner: Arc::new(Inner {
                engine,
                rules,
                servers,
                binary,
                flights,
                load_counters,
                spin: Spin::new(self.spin),
            }),
        })
    }
}

/// The future of one [`AsyncClient`] call, resolving to the call's result. It holds a handle
/// of the client, so it is `'static` and can be spawned.
///
/// Nothing is queued before its first poll. Dropping it at any point is safe: before a worker
/// starts the call nothing happens (the call is skipped, a write too); once started, the call
/// runs to its end and its answer is thrown away (so a write may have happened).
///
/// If user code the worker ran for the call panicked (a value's encoder or decoder), the panic
/// resumes where the future is polled, as it would have in the caller with a blocking
/// [`Client`]. If the client was shut down before answering, the result is
/// [`Error::Shutdown`]; if the worker serving it panicked elsewhere, [`Error::WorkerPanicked`].
#[must_use = "futures do nothing unless polled"]
pub struct AsyncCall<T> {
    state: State<T>,
    /// The prefix of the view that made the call, taken off the key its error names.
    view: Option<Arc<[u8]>>,
}

enum State<T> {
    /// Ready to queue on the first poll.
    Queue {
        client: Arc<Inner>,
        lane: Arc<Queue<Request>>,
        request: Request,
        answer: oneshot::Receiver<Outcome<T>>,
    },
    /// The queue was full: waiting for room.
    Sending {
        client: Arc<Inner>,
        push: Push<Request>,
        answer: oneshot::Receiver<Outcome<T>>,
    },
    /// Queued: waiting for the answer.
    Waiting(Queued<T>),
    /// Refused before anything was queued.
    Failed(Error),
    Done,
}

impl<T> State<T> {
    fn waiting(client: Arc<Inner>, answer: oneshot::Receiver<Outcome<T>>) -> State<T> {
        let wait = client.spin.queued();
        State::Waiting(Queued {
            client,
            answer,
            wait,
        })
    }
}

/// A queued call, counted among its client's calls in flight until it is answered or dropped.
struct Queued<T> {
    client: Arc<Inner>,
    answer: oneshot::Receiver<Outcome<T>>,
    wait: Wait,
}

impl<T> Drop for Queued<T> {
    fn drop(&mut self) {
        self.client.spin.done(&self.wait);
    }
}

impl<T> AsyncCall<T> {
    fn queue(
        client: &Arc<Inner>,
        lane: &Arc<Queue<Request>>,
        request: Request,
        answer: oneshot::Receiver<Outcome<T>>,
    ) -> Self {
        AsyncCall {
            view: None,
            state: State::Queue {
                client: Arc::clone(client),
                lane: Arc::clone(lane),
                request,
                answer,
            },
        }
    }

    pub(super) fn failed(error: Error) -> Self {
        AsyncCall {
            state: State::Failed(error),
            view: None,
        }
    }

    /// The call of a view under `prefix`, whose keys were sent with the prefix in front.
    pub(super) fn for_view(mut self, prefix: Arc<[u8]>) -> Self {
        self.view = Some(prefix);
        self
    }
}

impl<T> Future for AsyncCall<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let polled = self.as_mut().poll_call(cx);
        match (&self.view, polled) {
            (Some(prefix), Poll::Ready(Err(error))) => {
                Poll::Ready(Err(error.without_prefix(prefix, true)))
            }
            (_, polled) => polled,
        }
    }
}

impl<T> AsyncCall<T> {
    fn poll_call(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let state = &mut self.state;
        loop {
            *state = match mem::replace(state, State::Done) {
                State::Queue {
                    client,
                    lane,
                    request,
                    answer,
                } => match lane.try_push(request) {
                    Ok(()) => State::waiting(client, answer),
                    Err(Refused::Full(request)) => {
                        client.engine.counters.full_wait();
                        State::Sending {
                            client,
                            push: lane.push(request),
                            answer,
                        }
                    }
                    Err(Refused::Closed(_)) => return Poll::Ready(Err(Error::Shutdown)),
                },
                State::Sending {
                    client,
                    mut push,
                    answer,
                } => match Pin::new(&mut push).poll(cx) {
                    Poll::Ready(Ok(())) => State::waiting(client, answer),
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(Error::Shutdown)),
                    Poll::Pending => {
                        *state = State::Sending {
                            client,
                            push,
                            answer,
                        };
                        return Poll::Pending;
                    }
                },
                State::Waiting(mut queued) => match Pin::new(&mut queued.answer).poll(cx) {
                    Poll::Ready(outcome) => {
                        queued.wait.answered = true;
                        let closed = || queued.client.engine.is_closed();
                        return Poll::Ready(unwrap_outcome(outcome, closed));
                    }
                    Poll::Pending => {
                        queued.client.spin.not_ready(&mut queued.wait, cx);
                        *state = State::Waiting(queued);
                        return Poll::Pending;
                    }
                },
                State::Failed(error) => return Poll::Ready(Err(error)),
                State::Done => panic!("an AsyncCall was polled after it completed"),
            };
        }
    }
}

/// The call's result; a worker's panic in the caller's own code resumes here. A reply dropped
/// unanswered means the client shut down (`closed`, asked only then), or else that the worker
/// panicked.
fn unwrap_outcome<T>(
    outcome: Result<Outcome<T>, oneshot::Canceled>,
    closed: impl FnOnce() -> bool,
) -> Result<T> {
    match outcome {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => resume_unwind(panic),
        Err(oneshot::Canceled) if closed() => Err(Error::Shutdown),
        Err(oneshot::Canceled) => Err(Error::WorkerPanicked),
    }
}

/// The future of [`AsyncClient::shutdown`]: ready once every worker has stopped, or at the
/// deadline.
#[must_use = "futures do nothing unless polled"]
pub struct ShuttingDown {
    lanes: Vec<Arc<Queue<Request>>>,
    workers: Arc<Alive>,
    /// This shutdown's number among those waiting for the workers.
    id: u64,
    /// `None`: no deadline (a timeout too long to represent).
    deadline: Option<Instant>,
    /// The thread that wakes this future at the deadline, started on the first poll.
    timer: Option<Thread>,
}

/// How a [`ShuttingDown`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Workers still running a call at the deadline (0: every worker stopped in time). Each
    /// stops once its call ends.
    pub workers_running: usize,
    /// Calls still queued at the deadline, failed with [`Error::Shutdown`] unsent.
    pub calls_failed: usize,
}

impl Future for ShuttingDown {
    type Output = ShutdownReport;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ShutdownReport> {
        let this = &mut *self;
        let expired = this
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline);
        if expired {
            this.workers.forget(this.id);
            let calls_failed = engine::fail_queued(&this.lanes);
            return Poll::Ready(ShutdownReport {
                workers_running: this.workers.running(),
                calls_failed,
            });
        }
        if let (None, Some(deadline)) = (&this.timer, this.deadline) {
            let (workers, id) = (Arc::clone(&this.workers), this.id);
            let timer = thread::Builder::new()
                .name("memcached-async-shutdown".into())
                .spawn(move || {
                    // Unparked early when the last worker stops or the shutdown is dropped.
                    while workers.running() > 0 {
                        match deadline.checked_duration_since(Instant::now()) {
                            Some(left) if !left.is_zero() => thread::park_timeout(left),
                            _ => break,
                        }
                    }
                    // The waker of the shutdown's latest poll.
                    workers.wake(id);
                });
            // Without a timer thread, the deadline is seen at the next poll only.
            this.timer = timer.ok().map(|handle| handle.thread().clone());
        }
        match this.workers.watch(this.id, cx.waker(), this.timer.as_ref()) {
            0 => Poll::Ready(ShutdownReport {
                workers_running: 0,
                calls_failed: 0,
            }),
            _ => Poll::Pending,
        }
    }
}

impl Drop for ShuttingDown {
    fn drop(&mut self) {
        self.workers.forget(self.id);
    }
}

impl fmt::Debug for ShuttingDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShuttingDown")
            .field("workers_running", &self.workers.running())
            .finish()
    }
}

impl<T> fmt::Debug for AsyncCall<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Queue { .. } => "not queued",
            State::Sending { .. } => "waiting for room in the queue",
            State::Waiting(_) => "queued",
            State::Failed(_) => "refused",
            State::Done => "done",
        };
        f.debug_struct("AsyncCall").field("state", &state).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send + 'static>() {}

    #[test]
    fn handles_and_calls_cross_threads() {
        assert_send_sync::<AsyncClient>();
        assert_send::<AsyncCall<Option<String>>>();
        assert_send::<AsyncCall<Vec<crate::ServerStats>>>();
    }

    #[test]
    fn a_dropped_reply_is_a_shutdown_or_a_worker_panic_and_a_panic_resumes() {
        assert!(matches!(
            unwrap_outcome::<()>(Err(oneshot::Canceled), || true),
            Err(Error::Shutdown)
        ));
        assert!(matches!(
            unwrap_outcome::<()>(Err(oneshot::Canceled), || false),
            Err(Error::WorkerPanicked)
        ));
        assert_eq!(unwrap_outcome(Ok(Ok(Ok(7))), || false).unwrap(), 7);
        let panic = catch_unwind(|| unwrap_outcome::<()>(Ok(Err(Box::new("boom"))), || false));
        assert_eq!(*panic.unwrap_err().downcast::<&str>().unwrap(), "boom");
    }
}
