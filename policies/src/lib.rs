//! keygate's decision logic, written once and run everywhere.
//!
//! This crate has no I/O, no clock and no randomness: time and random bytes
//! are arguments. It is `no_std` + `alloc`, so the WebAssembly component built
//! from it (`keygate-guest`) imports nothing. Its tests run natively and
//! compiled to `wasm32-wasip2` inside wasmtime (see the README).
//!
//! - [`key`]: the key string format, its checksum and hash.
//! - [`record`]: key records, their rules and canonical encoding.
//! - [`registry`]: organizations with their key policy, project
//!   registrations and key tombstones, signed like records.
//! - [`snapshot`]: every fact a validator needs, signed as a whole and
//!   sequenced; deltas between two sequences.
//! - [`decision`]: `evaluate` one request against its signed evidence, or hold
//!   verified facts in a [`Validator`] for the hot path.
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::cloned_ref_to_slice_refs
    )
)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod decision;
mod held;
pub mod key;
pub mod record;
pub mod registry;
pub mod snapshot;

pub use decision::{
    Allowed, Authorized, Decision, DenyClass, DenyReason, Evidence, IssuerError, IssuerKey,
    LoadError, LoadOutcome, Request, SignedRecord, SnapshotStream, TrustedIssuers, Validator,
    check_issuer_key, evaluate, issuer_key_id,
};
pub use key::{IssuedKey, KeyError, ParseError, hash_key, looks_like_key, make_key, parse_key};
pub use record::{
    CreateRequest, EffectiveStatus, ExpiryPolicy, KeyLevel, KeyRecord, KeyStatus, ProjectAccess,
    RecordError, Scope, check_create,
};
pub use registry::{
    Body, ExpiryRule, KeyPolicy, Organization, ProjectRegistration, Tombstone, make_tombstone,
    register_organization, register_project,
};
pub use snapshot::{Snapshot, SnapshotError, SnapshotInfo, SnapshotWriter};

#[cfg(test)]
mod tests;
