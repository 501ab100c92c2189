//! Behaviors: libmemcached's tuning knobs, with typed values in the right units, and pylibmc's
//! names and raw values for configuration files.
//!
//! Every behavior is one row of the table in [`table`]: its variant and doc, pylibmc name, C
//! flag, kind of value and defaults. The enum, the name and flag lookups, parsing by name and
//! reading back are generated from it. [`Hash`] and [`Distribution`] are tables of their own.
//!
//! - `table`: the `behaviors!` table, [`Behavior`], [`BehaviorInfo`] and [`all_behaviors`].
//! - `kind`: the kinds of value (bool, durations in libmemcached's units, counts, hash,
//!   distribution): their Rust type and unit, how a raw value parses and reads back.
//! - `raw`: a behavior's raw value, checked on its own (`Behavior::to_raw`).
//! - `checks`: checks against a client's protocol, servers and other behaviors, and what
//!   follows a change (`Behavior::prepare`, `Behavior::settle`).
//! - `names`: behaviors by pylibmc name, refused names and the order named behaviors apply in.
//! - `hash`, `distribution`: [`Hash`] and [`Distribution`], from `c_enum!` tables.
//! - `value`: [`BehaviorValue`], a raw value as pylibmc shows it.

mod c_enum;
mod checks;
mod distribution;
mod hash;
mod kind;
mod names;
mod raw;
mod table;
mod value;

pub use distribution::{Distribution, distributions};
pub use hash::{Hash, hashers};
pub(crate) use names::{apply_order, parse_named};
pub use table::{Behavior, BehaviorInfo, all_behaviors};
pub use value::BehaviorValue;
