//! The properties the fuzz targets check, one module per target.
//!
//! The targets in `fuzz_targets/` are thin wrappers around these functions, so that
//! `tests/fuzz_regressions.rs` in the library can replay the committed corpus (and every crash
//! found) through the same checks with stable Rust and no libFuzzer. A check panics when a
//! property fails; a panic or an abort is a finding.

pub mod behavior;
pub mod config_string;
pub mod decode;
pub mod elasticache;
pub mod input;
pub mod keys;
pub mod live;
pub mod server_spec;
