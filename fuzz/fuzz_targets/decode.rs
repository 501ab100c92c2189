#![no_main]

use libfuzzer_sys::fuzz_target;
use libmemcached::{Client, FromValue, Result};
use libmemcached_fuzz::decode::{self, Decoder, MAX_INFLATED_LEN};

/// The client's own decoding, reached through the hook built only with `--cfg fuzzing`.
struct ClientDecoder(Client);

impl Decoder for ClientDecoder {
    fn decode<V: FromValue>(&self, data: &[u8], flags: u32) -> Result<V> {
        libmemcached::value::fuzz_decode(&self.0, data, flags)
    }

    fn max_inflated_len(&self) -> usize {
        MAX_INFLATED_LEN
    }
}

thread_local! {
    // No server is contacted: decoding needs only the client's settings.
    static DECODER: ClientDecoder = ClientDecoder(
        Client::builder()
            .servers(["127.0.0.1:1"])
            .max_inflated_len(MAX_INFLATED_LEN)
            .build()
            .expect("a client"),
    );
}

fuzz_target!(|data: &[u8]| DECODER.with(|decoder| decode::check(data, decoder)));
