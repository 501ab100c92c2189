//! [`AsyncClient`] (feature `async`): async calls served by worker threads that merge
//! concurrent gets into multi-gets.
//!
//! - `client`: the handle, its builder and [`AsyncCall`], the future of every call.
//! - `ops`: the operations other than `get`, listed once, each run by a worker as the blocking
//!   [`Client`](crate::Client) runs it.
//! - `engine`: the lanes (one per server, and one shared) and their worker threads.
//! - `queue`: a lane's bounded queue, which callers waiting for room can leave cheaply.
//! - `prefixed`: [`AsyncPrefixed`], the keys under a prefix.
//! - `load`: `get_or_set_with`, cache-aside with single-flight among the handles.
//! - `wait`: joining two futures, and pauses, without a runtime.
//! - `batch`: gets merged into one multi-get and answered one by one.
//! - `sets`: sets taken together, sent together and answered one by one.
//! - `spin`: the calls in flight, and a lone call polling briefly for its answer.
//! - `stats`: the counters behind [`EngineStats`].

mod batch;
mod client;
mod engine;
mod load;
mod ops;
mod prefixed;
mod queue;
mod sets;
mod spin;
mod stats;
mod wait;

pub use client::{
    AsyncCall, AsyncClient, AsyncClientBuilder, DEFAULT_MAX_BATCH, DEFAULT_QUEUE_CAPACITY,
    DEFAULT_SPIN, DEFAULT_WORKERS, ShutdownReport, ShuttingDown,
};
pub use ops::AsyncCommands;
pub use prefixed::AsyncPrefixed;
pub use stats::EngineStats;
