//! keygate host library: the embedded validation component, the sled store
//! of signed key records, project registrations and tombstones, the ed25519
//! issuer key, and the admin operations that the `keygate` binary exposes.
//!
//! Every decision and every record rule is taken by the WebAssembly
//! component built from `keygate-guest` (the very bytes other runtimes load);
//! this crate never re-implements one. Embed it in a Rust service with
//! [`admin::Keygate`]:
//!
//! ```no_run
//! use keygate::admin::{Access, Keygate, KeySpec, Location, now};
//! use keygate::runtime::bindings::ExpiryPolicy;
//!
//! let loc = Location::new("/var/lib/keygate").with_issuer_key("/etc/keygate/issuer.key");
//! let mut kg = Keygate::open(&loc, true)?;
//! let created = kg.create_key(KeySpec {
//!     organization: Some("acme".into()),
//!     name: "crm-sync".into(),
//!     access: Access::AllProjects,
//!     expiry: ExpiryPolicy::Days(30),
//!     scopes: vec!["trigger-workflows".into()],
//! }, now()?)?;
//! // Show created.issued.expose_key() to the user once; it is not stored.
//! # Ok::<(), keygate::Error>(())
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod admin;
pub mod cache;
pub mod client;
pub mod datadir;
pub mod error;
pub mod fsutil;
pub mod issuer;
pub mod runtime;
pub mod schema;
pub mod serve;
pub mod store;

pub use error::Error;
pub use runtime::{Module, Runtime, RuntimeError};
