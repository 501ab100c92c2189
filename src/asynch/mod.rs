//! [`AsyncClient`] (feature `async`): async calls served by worker threads that merge
//! concurrent gets into multi-gets.
//!
//! - `client`: the handle, its builder and [`AsyncCall`], the future of every call.
//! - `ops`: the operations other than `get`, listed once, each run by a worker as the blocking
//!   [`Client`](crate::Client) runs it.
//! - `engine`: the bounded queue and the worker threads.
//! - `batch`: gets merged into one multi-get and answered one by one.
//! - `stats`: the counters behind [`EngineStats`].

mod batch;
mod client;
mod engine;
mod ops;
mod stats;

pub use client::{
    AsyncCall, AsyncClient, AsyncClientBuilder, DEFAULT_MAX_BATCH, DEFAULT_QUEUE_CAPACITY,
    DEFAULT_WORKERS,
};
pub use stats::EngineStats;
