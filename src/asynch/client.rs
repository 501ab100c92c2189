//! [`AsyncClient`], its builder, and [`AsyncCall`], the future every call returns.

use std::fmt;
use std::future::Future;
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_channel::oneshot;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::key;
use crate::server::Address;
use crate::value::FromValue;

use super::batch::{GetRequest, Outcome};
use super::engine::{Engine, Job, Ran, Request};
use super::stats::{EngineStats, Shape};

/// Worker threads unless [`AsyncClientBuilder::workers`] says otherwise: two keep one worker
/// building a batch while the other waits for the server.
pub const DEFAULT_WORKERS: usize = 2;
/// Requests one worker takes at once unless [`AsyncClientBuilder::max_batch`] says otherwise.
pub const DEFAULT_MAX_BATCH: usize = 512;
/// Requests the queue holds unless [`AsyncClientBuilder::queue_capacity`] says otherwise.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// An async memcached client that merges concurrent gets into multi-gets.
///
/// Made from a configured [`Client`] (its servers, behaviors, SASL credentials, namespace and
/// compression carry over), it serves every call on a few worker threads, each with its own
/// clone of the client and so its own connections. It has no runtime of its own: its futures
/// complete when a worker answers, under any executor (tokio, async-std, a plain `block_on`).
///
/// [`get`](AsyncClient::get)s waiting in the queue when a worker takes one are served together
/// by one multi-get: the more concurrent callers, the fewer round trips per key. Everything else
/// runs as the blocking client runs it, one call at a time per worker.
///
/// The handle is cheap to clone and `Send + Sync`. Dropping the last handle closes the queue
/// and waits for the workers to finish what is queued (at most a queue's worth of calls), close
/// their connections and stop. Dropping a call's future at any point is safe: a call no worker
/// has started yet is never started (a write that was not sent did not happen), and a call a
/// worker has started is finished and its answer thrown away, so a timeout around a call
/// (`tokio::time::timeout(d, mc.get(..))`) never leaves a connection out of step.
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
    ) -> AsyncCall<'_, Option<V>> {
        let key = key.as_ref();
        if let Err(error) = self.inner.rules.check(key) {
            return AsyncCall::failed(error);
        }
        let (reply, answer) = oneshot::channel::<Outcome<Option<V>>>();
        let request = Request::Get(GetRequest {
            key: key.into(),
            waiter: Box::new(reply),
        });
        AsyncCall::queue(&self.inner.engine, request, answer)
    }

    /// The sum of the metrics of the workers' clients (see
    /// [`Client::metrics`](crate::Client::metrics)). Gets merged into one multi-get count as
    /// one operation; hits and misses are per key.
    pub fn metrics(&self) -> crate::Metrics {
        self.inner.engine.metrics.snapshot()
    }

    /// What the engine has done so far: batches, keys per batch, queue depth, requests served.
    pub fn engine_stats(&self) -> EngineStats {
        let engine = &self.inner.engine;
        engine.counters.snapshot(engine.shape, engine.queue.len())
    }

    /// The servers, as the client was configured.
    pub fn servers(&self) -> &[Address] {
        &self.inner.servers
    }

    /// Whether the binary protocol is on.
    pub fn is_binary(&self) -> bool {
        self.inner.binary
    }

    /// Queues `op` to run on a worker's client.
    pub(super) fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Client) -> Result<T> + Send + 'static,
    ) -> AsyncCall<'_, T> {
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
        AsyncCall::queue(&self.inner.engine, Request::Run(job), answer)
    }
}

impl fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self.servers().iter().map(Address::to_string).collect();
        f.debug_struct("AsyncClient")
            .field("servers", &servers)
            .field("binary", &self.is_binary())
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
}

impl AsyncClientBuilder {
    /// Worker threads, each with its own connections (default [`DEFAULT_WORKERS`]). More
    /// workers run more writes and batches at once.
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

    /// How many requests wait in the queue before callers wait for room, asynchronously
    /// (default [`DEFAULT_QUEUE_CAPACITY`]).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
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
                return Err(Error::InvalidConfig(format!(
                    "an AsyncClient needs {name} of at least 1"
                )));
            }
        }
        let rules = self.client.key_rules();
        let servers = self.client.servers();
        let binary = self.client.is_binary();
        let shape = Shape {
            workers: self.workers,
            queue_capacity: self.queue_capacity,
            max_batch: self.max_batch,
        };
        Ok(AsyncClient {
            inner: Arc::new(Inner {
                engine: Engine::start(self.client, shape)?,
                rules,
                servers,
                binary,
            }),
        })
    }
}

/// The future of one [`AsyncClient`] call, resolving to the call's result.
///
/// Nothing is queued before its first poll. Dropping it at any point is safe: before a worker
/// starts the call nothing happens (the call is skipped, a write too); once started, the call
/// runs to its end and its answer is thrown away (so a write may have happened).
///
/// If user code the worker ran for the call panicked (a value's encoder or decoder), the panic
/// resumes where the future is polled, as it would have in the caller with a blocking
/// [`Client`]. If the engine stopped before answering, the result is [`Error::Shutdown`].
#[must_use = "futures do nothing unless polled"]
pub struct AsyncCall<'a, T> {
    state: State<'a, T>,
}

enum State<'a, T> {
    /// Ready to queue on the first poll.
    Queue {
        engine: &'a Engine,
        request: Request,
        answer: oneshot::Receiver<Outcome<T>>,
    },
    /// The queue was full: waiting for room.
    Sending {
        send: flume::r#async::SendFut<'a, Request>,
        answer: oneshot::Receiver<Outcome<T>>,
    },
    /// Queued: waiting for the answer.
    Waiting(oneshot::Receiver<Outcome<T>>),
    /// Refused before anything was queued.
    Failed(Error),
    Done,
}

impl<'a, T> AsyncCall<'a, T> {
    fn queue(engine: &'a Engine, request: Request, answer: oneshot::Receiver<Outcome<T>>) -> Self {
        AsyncCall {
            state: State::Queue {
                engine,
                request,
                answer,
            },
        }
    }

    pub(super) fn failed(error: Error) -> Self {
        AsyncCall {
            state: State::Failed(error),
        }
    }
}

impl<T> Future for AsyncCall<'_, T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let state = &mut self.state;
        loop {
            *state = match mem::replace(state, State::Done) {
                State::Queue {
                    engine,
                    request,
                    answer,
                } => match engine.queue.try_send(request) {
                    Ok(()) => State::Waiting(answer),
                    Err(flume::TrySendError::Full(request)) => {
                        engine.counters.full_wait();
                        State::Sending {
                            send: engine.queue.send_async(request),
                            answer,
                        }
                    }
                    Err(flume::TrySendError::Disconnected(_)) => {
                        return Poll::Ready(Err(Error::Shutdown));
                    }
                },
                State::Sending { mut send, answer } => match Pin::new(&mut send).poll(cx) {
                    Poll::Ready(Ok(())) => State::Waiting(answer),
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(Error::Shutdown)),
                    Poll::Pending => {
                        *state = State::Sending { send, answer };
                        return Poll::Pending;
                    }
                },
                State::Waiting(mut answer) => match Pin::new(&mut answer).poll(cx) {
                    Poll::Ready(outcome) => return Poll::Ready(unwrap_outcome(outcome)),
                    Poll::Pending => {
                        *state = State::Waiting(answer);
                        return Poll::Pending;
                    }
                },
                State::Failed(error) => return Poll::Ready(Err(error)),
                State::Done => panic!("an AsyncCall was polled after it completed"),
            };
        }
    }
}

/// The call's result; a worker's panic resumes here; a dropped reply means the engine stopped.
fn unwrap_outcome<T>(outcome: Result<Outcome<T>, oneshot::Canceled>) -> Result<T> {
    match outcome {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => resume_unwind(panic),
        Err(oneshot::Canceled) => Err(Error::Shutdown),
    }
}

impl<T> fmt::Debug for AsyncCall<'_, T> {
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
    fn assert_send<T: Send>() {}

    #[test]
    fn handles_and_calls_cross_threads() {
        assert_send_sync::<AsyncClient>();
        assert_send::<AsyncCall<'static, Option<String>>>();
        assert_send::<AsyncCall<'static, Vec<crate::ServerStats>>>();
    }

    #[test]
    fn a_dropped_reply_is_a_shutdown_and_a_panic_resumes() {
        assert!(matches!(
            unwrap_outcome::<()>(Err(oneshot::Canceled)),
            Err(Error::Shutdown)
        ));
        assert_eq!(unwrap_outcome(Ok(Ok(Ok(7)))).unwrap(), 7);
        let panic = catch_unwind(|| unwrap_outcome::<()>(Ok(Err(Box::new("boom")))));
        assert_eq!(*panic.unwrap_err().downcast::<&str>().unwrap(), "boom");
    }
}
