#![no_main]

use libfuzzer_sys::fuzz_target;
use libmemcached_fuzz::live::{self, Live};

thread_local! {
    // One memcached for the whole run, killed once the fuzzer is gone.
    static LIVE: Live = {
        let live = Live::start().expect("memcached starts (install Debian's memcached)");
        live.kill_server_after_exit();
        live
    };
}

fuzz_target!(|data: &[u8]| LIVE.with(|l| live::check(data, l)));
