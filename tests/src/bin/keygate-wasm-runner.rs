//! Runs a `wasm32-wasip2` command component (such as a Rust test harness)
//! inside wasmtime: `keygate-wasm-runner PATH.wasm [ARGS...]`.
//!
//! Registered as cargo's runner for that target in `.cargo/config.toml`, so
//! `cargo test -p keygate-policy --target wasm32-wasip2` executes the policy
//! tests inside the same runtime the host embeds. Arguments, environment and
//! stdio are passed through, and the working directory is preopened as `.`.
//! The test binary is compiled on every run: caching native code safely
//! needs a secret to authenticate it, which a test runner does not have.
//!
//! Exit status: the component's own (0 on success, 1 when `run` returns an
//! error, its `exit(n)` code), 101 when it traps (a panic under `panic=abort`),
//! 2 when the runner itself fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

struct State {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(wasm) = args.first().map(PathBuf::from) else {
        eprintln!("usage: keygate-wasm-runner PATH.wasm [ARGS...]");
        return ExitCode::from(2);
    };
    match run(&wasm, &args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keygate-wasm-runner: {}: {e:#}", wasm.display());
            ExitCode::from(2)
        }
    }
}

fn run(wasm: &Path, args: &[String]) -> wasmtime::Result<ExitCode> {
    let engine = Engine::default();
    let bytes = std::fs::read(wasm)?;
    // Compiled every time: a cache of native code needs a key to
    // authenticate it (see keygate::cache), and a test runner has no secret.
    let component = Component::new(&engine, &bytes)?;

    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;

    let mut wasi = WasiCtx::builder();
    wasi.inherit_stdio().inherit_env().args(args);
    wasi.preopened_dir(".", ".", FsPerms::ReadOnly)?;
    let mut store = Store::new(
        &engine,
        State {
            ctx: wasi.build(),
            table: ResourceTable::new(),
        },
    );

    let command = Command::instantiate(&mut store, &component, &linker)?;
    match command.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(())) => Ok(ExitCode::FAILURE),
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                return Ok(ExitCode::from(u8::try_from(exit.0).unwrap_or(1)));
            }
            eprintln!("keygate-wasm-runner: {} trapped: {e:?}", wasm.display());
            Ok(ExitCode::from(101))
        }
    }
}
