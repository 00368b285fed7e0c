//! Builds the validation component (`keygate-guest`) for `wasm32-wasip2` and
//! hands its bytes to the host, which embeds them with `include_bytes!`.
//!
//! - `KEYGATE_PREBUILT_COMPONENT=/path/to/keygate.wasm` skips the build and
//!   embeds that file instead (for packaging).
//! - Otherwise cargo is run for the guest with its own target directory
//!   (inside `OUT_DIR`): sharing the outer build's target directory would
//!   deadlock on its lock.
//! - Without the `wasm32-wasip2` target installed, the build stops with one
//!   line naming the command that installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, exit};

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    println!("cargo::warning={msg}");
    exit(1);
}

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let dest = out_dir.join("keygate.wasm");
    println!("cargo::rerun-if-env-changed=KEYGATE_PREBUILT_COMPONENT");
    if let Some(prebuilt) = std::env::var_os("KEYGATE_PREBUILT_COMPONENT") {
        println!("cargo::rerun-if-changed={}", Path::new(&prebuilt).display());
        if let Err(e) = std::fs::copy(&prebuilt, &dest) {
            fail(&format!(
                "KEYGATE_PREBUILT_COMPONENT `{}`: {e}",
                Path::new(&prebuilt).display()
            ));
        }
        return;
    }

    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    for watched in ["wit", "guest", "policies", "Cargo.lock", "Cargo.toml"] {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !Path::new(&sysroot)
        .join("lib/rustlib/wasm32-wasip2")
        .is_dir()
    {
        fail("the wasm32-wasip2 target is not installed; run `rustup target add wasm32-wasip2`");
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = out_dir.join("guest-target");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "keygate-guest",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // Settings cargo passes to build scripts that must not leak into the
    // nested build (they describe the host build, not the guest).
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "building the keygate-guest component failed ({s})"
        )),
        Err(e) => fail(&format!(
            "could not run cargo to build the keygate-guest component: {e}"
        )),
    }
    let built = target_dir.join("wasm32-wasip2/release/keygate_guest.wasm");
    if let Err(e) = std::fs::copy(&built, &dest) {
        fail(&format!("copying {}: {e}", built.display()));
    }
}
