//! Behaviors by name: `Behavior::from_name` never panics; an accepted behavior's
//! `raw_value()` parses back to the same behavior under its own name; a client built with it
//! (either protocol) builds or refuses it with a configuration error, and reads it back as
//! that raw value.

use libmemcached::{Behavior, Client, all_behaviors, distributions, hashers};

use super::input::Input;

/// Checks one input: a name (one of the table's or any text), then a value (a hash or
/// distribution name, a number, or any text).
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let behaviors = all_behaviors();
    let pick = input.choose(behaviors.len() + 1);
    let binary = input.flag();
    let owned_name;
    let name = match behaviors.get(pick) {
        Some(info) => info.name(),
        None => {
            owned_name = String::from_utf8_lossy(input.bytes(40)).into_owned();
            &owned_name
        }
    };
    let owned_value;
    let value: &str = match input.choose(5) {
        0 => hashers()[input.choose(hashers().len())].0,
        1 => distributions()[input.choose(distributions().len())].0,
        2 => {
            owned_value = input.u64().to_string();
            &owned_value
        }
        3 => {
            owned_value = (input.u64() as i64).to_string();
            &owned_value
        }
        _ => {
            owned_value = String::from_utf8_lossy(input.rest()).into_owned();
            &owned_value
        }
    };
    let Ok(behavior) = Behavior::from_name(name, value) else {
        return;
    };
    let raw = behavior
        .raw_value()
        .unwrap_or_else(|e| panic!("{name}={value:?} accepted as {behavior:?}, raw value: {e}"));
    let back = Behavior::from_name(behavior.name(), raw)
        .unwrap_or_else(|e| panic!("{behavior:?} raw {raw} does not parse back: {e}"));
    assert_eq!(back, behavior, "{name}={value:?} -> {raw}");
    assert_eq!(back.raw_value().ok(), Some(raw));

    let built = Client::builder()
        .servers(["127.0.0.1:1", "127.0.0.1:2"])
        .binary(binary)
        .behavior(behavior)
        .build();
    match built {
        Ok(client) => {
            let read = client
                .behavior_by_name(behavior.name())
                .unwrap_or_else(|e| panic!("{behavior:?} does not read back: {e}"));
            assert_eq!(read, raw, "{behavior:?} (binary: {binary}) reads back");
        }
        Err(e) => assert!(e.is_invalid_input(), "{behavior:?} (binary: {binary}): {e}"),
    }
}
