#![no_main]

use libfuzzer_sys::fuzz_target;
use libmemcached_fuzz::keys::{self, Clients};

thread_local! {
    static CLIENTS: Clients = Clients::new();
}

fuzz_target!(|data: &[u8]| CLIENTS.with(|clients| keys::check(data, clients)));
