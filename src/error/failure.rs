//! The failures of a multi-key operation: which keys each error cost ([`KeyFailure`]).

use super::Error;

/// Keys that one error cost in a multi-key operation.
#[derive(Debug, Clone)]
pub struct KeyFailure {
    /// What went wrong (its [`Error::server`] names the server).
    pub error: Error,
    /// The keys affected, as the caller gave them (without a view's prefix).
    pub keys: Vec<Vec<u8>>,
}

impl KeyFailure {
    /// Adds `key` to the failure with the same code and server as `error` (the same
    /// operation, for [`Error::Unanswered`]), or starts one. An error that speaks of its own key
    /// and value ([`Error::TooBig`], a decode error) stays a failure of its own.
    pub(crate) fn record(failures: &mut Vec<KeyFailure>, error: Error, key: Vec<u8>) {
        let error = error.without_key();
        let same = |f: &&mut KeyFailure| match (&f.error, &error) {
            (Error::Unanswered { operation: a, .. }, Error::Unanswered { operation: b, .. }) => {
                a == b
            }
            (Error::Memcached { .. }, Error::Memcached { .. }) => {
                f.error.code() == error.code() && f.error.server() == error.server()
            }
            _ => false,
        };
        match failures.iter_mut().find(same) {
            Some(failure) => failure.keys.push(key),
            None => failures.push(KeyFailure {
                error,
                keys: vec![key],
            }),
        }
    }
}

/// What every failure says of itself, if they all say the same (`None` when they differ or
/// there are none).
pub(super) fn agreed<'a, T: PartialEq>(
    failures: &'a [KeyFailure],
    what: impl Fn(&'a Error) -> T,
) -> Option<T> {
    let mut said = failures.iter().map(|f| what(&f.error));
    let first = said.next()?;
    said.all(|other| other == first).then_some(first)
}

pub(super) fn describe_failures(failures: &[KeyFailure]) -> String {
    let keys: usize = failures.iter().map(|f| f.keys.len()).sum();
    let mut text = match keys {
        0 => format!("{} servers failed", failures.len()),
        1 => "1 key failed".to_owned(),
        n => format!("{n} keys failed"),
    };
    for failure in failures {
        text.push_str(&format!("; {}", failure.error));
        if failure.keys.is_empty() {
            continue;
        }
        let shown: Vec<String> = failure
            .keys
            .iter()
            .take(3)
            .map(|k| crate::key::display(k))
            .collect();
        let more = failure.keys.len() - shown.len();
        text.push_str(&format!(" ({}", shown.join(", ")));
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        text.push(')');
    }
    text
}
