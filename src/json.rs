//! [`Json`]: serde values stored as JSON (feature `serde`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::BoxError;
use crate::value::{Encoded, FromValue, ToValue, flags};

/// A serde value stored as JSON, with the flag [`flags::JSON`] (32).
///
/// The flag lies outside pylibmc's type bits, so pylibmc reads these values as `bytes` (which
/// `json.loads` takes as they are). Reading a value stored with other flags into `Json<T>` is a
/// decode error, except plain text and bytes, which are parsed as JSON.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = libmemcached::testing::TestServer::from_env_or_spawn()?;
/// # let mc = libmemcached::Client::new([server.spec()])?;
/// use libmemcached::Json;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, PartialEq, Debug)]
/// struct User { name: String, visits: u32 }
///
/// mc.set("user:1", Json(User { name: "ada".into(), visits: 3 }), 0)?;
/// let Json(user): Json<User> = mc.get("user:1")?.unwrap();
/// assert_eq!(user.visits, 3);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

impl<T: Serialize> ToValue for Json<T> {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        Ok(Encoded::owned(serde_json::to_vec(&self.0)?, flags::JSON))
    }
}

impl<T: DeserializeOwned> FromValue for Json<T> {
    fn from_value(data: &[u8], flags: u32) -> Result<Self, BoxError> {
        // The top 16 bits are PHP's user flags, which say nothing of the type.
        let flags = flags & !flags::ZLIB & 0xffff;
        let php_json = crate::php::PhpType::Json.crate_flags();
        if ![flags::JSON, php_json, flags::BYTES, flags::TEXT].contains(&flags) {
            return Err(format!("flags {flags} are not JSON ({})", flags::JSON).into());
        }
        Ok(Json(serde_json::from_slice(data)?))
    }
}
