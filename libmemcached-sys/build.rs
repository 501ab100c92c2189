//! Finds libmemcached, generates bindings with bindgen and compiles C wrappers for the header's
//! `static inline` functions.
//!
//! Overrides: `LIBMEMCACHED_INCLUDE_DIR` and `LIBMEMCACHED_LIB_DIR` skip pkg-config and point at
//! an installation directly.
//!
//! With `DOCS_RS` set (docs.rs sets it; `DOCS_RS=1 cargo doc` does the same anywhere) the build
//! needs neither libmemcached nor libclang: it uses the bindings committed in
//! `src/bindings_pregenerated.rs` (written by `scripts/regenerate-bindings` from this script's own
//! bindgen configuration), links nothing and compiles no C. Such a build is good for
//! documentation only.
//!
//! Metadata for dependents (`DEP_MEMCACHED_*`): `VERSION` ("1.1.4"), `VERSION_HEX`, `SASL` ("1" or
//! "0") and `INCLUDE` (not in a docs.rs build).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::exit;

// The safe `libmemcached` crate reads private layouts of the 1.1 series, so it takes 1.1.x
// only: older and newer series are refused here, and at run time a library other than the one
// these headers describe.
const MIN_VERSION: &str = "1.1.0";
const BELOW_VERSION: &str = "1.2";
const SERIES: &str = "1.1.";
const INSTALL_HINT: &str =
    "On Debian or Ubuntu: sudo apt-get install libmemcached-dev pkg-config libclang-dev clang";
// Bindings are generated for the crates' declared MSRV, so that every compiler from it on writes
// the same file (bindgen otherwise adapts its output to the compiler running the build).
const RUST_TARGET: (u64, u64) = (85, 0);
const PREGENERATED: &str = "src/bindings_pregenerated.rs";

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-env-changed=LIBMEMCACHED_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=LIBMEMCACHED_LIB_DIR");
    println!("cargo:rerun-if-env-changed=DOCS_RS");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if env::var_os("DOCS_RS").is_some() {
        use_pregenerated(&out_dir);
        return;
    }

    let include_paths = find_library();
    let configure_h = include_paths
        .iter()
        .map(|dir| dir.join("libmemcached-1.0/configure.h"))
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            fail("libmemcached's headers (libmemcached-1.0/configure.h) were not found")
        });
    export_metadata(&configure_h, &include_paths);
    generate_bindings(&include_paths, &out_dir);
}

/// Tells cargo how to link libmemcached and returns the include directories.
fn find_library() -> Vec<PathBuf> {
    if let Some(include) = env::var_os("LIBMEMCACHED_INCLUDE_DIR") {
        let lib_dir = env::var_os("LIBMEMCACHED_LIB_DIR").unwrap_or_else(|| {
            fail("LIBMEMCACHED_INCLUDE_DIR is set but LIBMEMCACHED_LIB_DIR is not")
        });
        println!(
            "cargo:rustc-link-search=native={}",
            Path::new(&lib_dir).display()
        );
        println!("cargo:rustc-link-lib=memcached");
        println!("cargo:rustc-link-lib=memcachedutil");
        return vec![PathBuf::from(include)];
    }
    match pkg_config::Config::new()
        .range_version(MIN_VERSION..BELOW_VERSION)
        .probe("libmemcached")
    {
        Ok(library) => library.include_paths,
        Err(err) => fail(&format!(
            "libmemcached {SERIES}x (>= {MIN_VERSION}, < {BELOW_VERSION}) was not found by \
             pkg-config: {err}"
        )),
    }
}

fn export_metadata(configure_h: &Path, include_paths: &[PathBuf]) {
    println!("cargo:rerun-if-changed={}", configure_h.display());
    let text = fs::read_to_string(configure_h)
        .unwrap_or_else(|err| fail(&format!("cannot read {}: {err}", configure_h.display())));
    let define = |name: &str| {
        text.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("#define") && words.next() == Some(name))
                .then(|| words.next().unwrap_or("").trim_matches('"').to_owned())
        })
    };
    let version = define("LIBMEMCACHED_VERSION_STRING")
        .unwrap_or_else(|| fail("configure.h has no LIBMEMCACHED_VERSION_STRING"));
    if !version.starts_with(SERIES) {
        fail(&format!(
            "libmemcached {version} found in {}: this crate takes {SERIES}x only",
            configure_h.display()
        ));
    }
    let sasl = define("LIBMEMCACHED_WITH_SASL_SUPPORT").is_some_and(|v| v != "0");
    println!("cargo:version={version}");
    println!(
        "cargo:version_hex={}",
        define("LIBMEMCACHED_VERSION_HEX").unwrap_or_default()
    );
    println!("cargo:sasl={}", u8::from(sasl));
    if let Some(first) = include_paths.first() {
        println!("cargo:include={}", first.display());
    }
}

/// A docs-only build: the committed bindings become `OUT_DIR/bindings.rs`, and the metadata comes
/// from the header constants they hold. Nothing is linked or compiled.
fn use_pregenerated(out_dir: &Path) {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let path = manifest_dir.join(PREGENERATED);
    println!("cargo:rerun-if-changed={}", path.display());
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|err| fail(&format!("cannot read {}: {err}", path.display())));
    // Lines such as `pub const LIBMEMCACHED_VERSION_STRING: &[u8; 6] = b"1.1.4\0";`
    let constant = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix("pub const ")?.strip_prefix(name)?;
            let value = rest.strip_prefix(':')?.split_once(" = ")?.1;
            Some(value.trim_end_matches(';').to_owned())
        })
    };
    let missing = |name: &str| -> ! { fail(&format!("{PREGENERATED} has no {name}")) };
    let version = constant("LIBMEMCACHED_VERSION_STRING")
        .and_then(|v| Some(v.strip_prefix("b\"")?.strip_suffix("\\0\"")?.to_owned()))
        .unwrap_or_else(|| missing("LIBMEMCACHED_VERSION_STRING"));
    let version_hex = constant("LIBMEMCACHED_VERSION_HEX")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| missing("LIBMEMCACHED_VERSION_HEX"));
    let sasl = constant("LIBMEMCACHED_WITH_SASL_SUPPORT").is_some_and(|v| v != "0");
    println!("cargo:version={version}");
    println!("cargo:version_hex=0x{version_hex:09x}");
    println!("cargo:sasl={}", u8::from(sasl));
    fs::write(out_dir.join("bindings.rs"), &text)
        .unwrap_or_else(|err| fail(&format!("cannot write bindings: {err}")));
}

fn generate_bindings(include_paths: &[PathBuf], out_dir: &Path) {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let header = manifest_dir.join("wrapper.h");
    let static_fns = out_dir.join("static_fns");

    let (minor, patch) = RUST_TARGET;
    let rust_target = bindgen::RustTarget::stable(minor, patch)
        .unwrap_or_else(|err| fail(&format!("bindgen does not know Rust 1.{minor}: {err}")));
    let builder = bindgen::Builder::default()
        .rust_target(rust_target)
        .header(header.to_string_lossy())
        .clang_args(include_paths.iter().map(|p| format!("-I{}", p.display())))
        .allowlist_function("(memcached|libmemcached|hashkit)(_.*)?")
        .allowlist_type("(memcached|hashkit)_.*")
        .allowlist_var("(MEMCACHED|LIBMEMCACHED|HASHKIT)_.*")
        // Plain integer constants: a code from a newer library is just another number, never UB.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .generate_comments(false)
        .use_core()
        .wrap_static_fns(true)
        .wrap_static_fns_path(&static_fns)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));

    // A missing libclang makes bindgen panic; turn that into the same one-line message as the rest.
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let generated =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate()));
    std::panic::set_hook(previous_hook);
    let bindings = match generated {
        Ok(Ok(bindings)) => bindings,
        Ok(Err(err)) => fail(&format!(
            "bindgen could not read libmemcached's headers: {err}"
        )),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("bindgen panicked");
            fail(&format!("bindgen needs libclang: {reason}"))
        }
    };
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .unwrap_or_else(|err| fail(&format!("cannot write bindings: {err}")));

    cc::Build::new()
        .file(static_fns.with_extension("c"))
        .include(&manifest_dir)
        .includes(include_paths)
        .warnings(false)
        .compile("memcached_static_fns");
}

/// Stops the build with one clear message instead of a backtrace.
fn fail(message: &str) -> ! {
    eprintln!("\nerror: libmemcached-sys: {message}\n{INSTALL_HINT}\n");
    exit(1);
}
