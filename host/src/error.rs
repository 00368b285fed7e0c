//! The host's one error type. Every message is one lowercase line that names
//! the user's input in backticks and never contains a secret.

use std::path::PathBuf;

use crate::runtime::RuntimeError;

/// What went wrong in an admin operation. The CLI prints it on one line and
/// exits with status 2; the store is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's input breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// A named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// No store has been initialised at the path.
    #[error("no keygate store at `{0}` (create a project or key there, or run `keygate init`)")]
    NoStore(PathBuf),
    /// The directory holds something that is not a keygate store.
    #[error("`{0}` is not a keygate data directory (it is not empty and has no keygate store)")]
    Foreign(PathBuf),
    /// The store exists but cannot be read as one.
    #[error("the keygate store at `{path}` is corrupt: {why}")]
    Corrupt {
        /// Data directory.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Another process holds the store.
    #[error(
        "the keygate store at `{0}` is in use by another keygate process; try again when it has finished"
    )]
    Locked(PathBuf),
    /// A stored record failed its signature check.
    #[error(
        "the stored record of key `{0}` failed signature verification: it is not trusted, and the store may have been tampered with"
    )]
    Tampered(String),
    /// The issuer key file is unusable.
    #[error("{0}")]
    Issuer(String),
    /// The operating system failed us (I/O, randomness).
    #[error("{0}")]
    System(String),
    /// The WebAssembly runtime failed (not a decision).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
