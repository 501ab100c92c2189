//! The shield's checker on arbitrary request and reply streams, cut anywhere (see
//! `libmemcached::fuzz_shield`, in `src/shield/mod.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| libmemcached::fuzz_shield(data));
