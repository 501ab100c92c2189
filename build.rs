//! Turns libmemcached-sys's build metadata into cfgs:
//! `libmemcached_1_1` (libmemcached 1.1 or newer) and `libmemcached_sasl` (built with SASL).

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(libmemcached_1_1)");
    println!("cargo::rustc-check-cfg=cfg(libmemcached_sasl)");

    let version = env::var("DEP_MEMCACHED_VERSION").unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) >= (1, 1) {
        println!("cargo::rustc-cfg=libmemcached_1_1");
    }
    if env::var("DEP_MEMCACHED_SASL").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=libmemcached_sasl");
    }
    println!("cargo::rustc-env=LIBMEMCACHED_BUILD_VERSION={version}");
}
