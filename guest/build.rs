//! The component is `no_std`, so nothing pulls in wasi-libc, yet the compiler
//! still emits calls to `memcmp`/`memcpy`. Link wasi-libc's static archive
//! (shipped with the wasm32-wasip2 target) for those pure functions; they
//! import nothing.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo::rustc-link-lib=c");
    }
}
