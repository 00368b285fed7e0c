//! keygate host library: the embedded validation component and the
//! wasmtime runtime that runs it.
//!
//! Every decision is made by the WebAssembly component built from
//! `keygate-guest` (the very bytes other runtimes load); this crate never
//! re-implements one.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod cache;
pub mod runtime;

pub use runtime::{Module, Runtime, RuntimeError};
