#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/php_value.rs"]
mod php_value;

fuzz_target!(|data: &[u8]| php_value::check(data));
