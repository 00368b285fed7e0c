//! keygate's integration tests: one test binary, a module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

mod bad_input;
mod component;
mod crash;
mod hardening;
mod lifecycle;
mod migrate;
mod orgs;
mod page;
mod rotation;
mod security;
mod serve;
mod snapshot;
mod tamper;
