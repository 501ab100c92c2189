//! Turns libmemcached-sys's build metadata into the `libmemcached_sasl` cfg (built with SASL) and
//! the `LIBMEMCACHED_BUILD_VERSION` environment variable.

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(libmemcached_sasl)");

    let version = env::var("DEP_MEMCACHED_VERSION").unwrap_or_default();
    if env::var("DEP_MEMCACHED_SASL").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=libmemcached_sasl");
    }
    println!("cargo::rustc-env=LIBMEMCACHED_BUILD_VERSION={version}");
}
