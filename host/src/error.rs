//! The host's one error type. Every message is one lowercase line that names
//! the user's input in backticks, never contains a secret or a key, and does
//! not assume a command line (no flag names): the CLI adds its own hints.

use std::path::PathBuf;

use crate::runtime::RuntimeError;

/// What went wrong in an admin operation or a verification. The CLI prints
/// it on one line and exits with status 2; the store is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule of the policy was broken; code and message come from the
    /// policy component (`record-error-text`).
    #[error("{message}")]
    Policy {
        /// Machine name of the rule (`name-empty`, `expiry-out-of-range`...).
        code: String,
        /// The component's message.
        message: String,
    },
    /// An input that looks like an API key was given where a key must never
    /// be (an argument, a name, an id). The input is deliberately not shown.
    #[error(
        "an input looks like an API key; keys are never taken as arguments or ids (they would leak into shell history, process lists and logs)"
    )]
    KeyLooking,
    /// No key with this id was ever created here.
    #[error("unknown key id `{0}`")]
    UnknownKey(String),
    /// The key was deleted.
    #[error("key `{0}` was deleted")]
    KeyDeleted(String),
    /// No project with this id.
    #[error("unknown project `{0}`")]
    UnknownProject(String),
    /// The project was deleted.
    #[error("project `{0}` was deleted")]
    ProjectDeleted(String),
    /// A project of another organization was named.
    #[error("project `{project}` belongs to organization `{owner}`, not `{asked}`")]
    ProjectInOtherOrganization {
        /// The project id.
        project: String,
        /// Its organization.
        owner: String,
        /// The organization asked for.
        asked: String,
    },
    /// An organization-level key was asked for without an organization.
    #[error("an organization-level key needs an organization")]
    NeedsOrganization,
    /// An unknown scope name.
    #[error("unknown scope `{name}` (known scopes: {known})")]
    UnknownScope {
        /// The name given.
        name: String,
        /// The known scope names, comma-separated.
        known: String,
    },
    /// An admin token name that is empty, too long or has control characters.
    #[error("an admin token name must be 1 to 100 characters without control characters")]
    BadTokenName,
    /// No organization with this slug (and the nearest live one, if close).
    #[error("unknown organization `{slug}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownOrganization {
        /// The slug asked for.
        slug: String,
        /// A live organization with a close slug.
        suggestion: Option<String>,
    },
    /// The organization was deleted.
    #[error("organization `{0}` was deleted; its slug is not used again")]
    OrganizationDeleted(String),
    /// A slug without an organization record that the store's facts name:
    /// its record was removed, and it is not registered again.
    #[error(
        "organization `{slug}` has no record, but the store names it ({trace}): its record was removed from the data directory; restore the store from a backup (a slug is never registered twice)"
    )]
    OrganizationRecordMissing {
        /// The slug.
        slug: String,
        /// What names it.
        trace: String,
    },
    /// The organization already exists.
    #[error("organization `{0}` already exists")]
    OrganizationExists(String),
    /// An organization with live projects or keys was asked to be deleted.
    #[error("organization `{slug}` still has {projects} project(s) and {keys} key(s)")]
    OrganizationNotEmpty {
        /// The slug.
        slug: String,
        /// Live projects.
        projects: usize,
        /// Live keys.
        keys: usize,
    },
    /// No admin token with this id.
    #[error("unknown admin token id `{0}`")]
    UnknownAdminToken(String),
    /// A bad deployment key prefix.
    #[error("key prefix `{0}` must be 2 to 12 lowercase letters or digits, starting with a letter")]
    BadPrefix(String),
    /// A deployment prefix keygate keeps for itself.
    #[error("key prefix `{0}` is reserved for keygate's admin tokens; choose another")]
    ReservedPrefix(String),
    /// The data directory already holds a store.
    #[error("`{0}` already holds a keygate store")]
    AlreadyInitialised(PathBuf),
    /// No store has been initialised at the path.
    #[error("no keygate store at `{0}` (create a project or key there, or initialise it)")]
    NoStore(PathBuf),
    /// The directory holds something that is not a keygate store.
    #[error("`{0}` is not a keygate data directory (it holds files keygate did not write)")]
    Foreign(PathBuf),
    /// The store exists but cannot be read as one.
    #[error("the keygate store at `{path}` is corrupt: {why}")]
    Corrupt {
        /// Data directory.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The store was written by an older keygate and must be migrated first.
    #[error(
        "the keygate store at `{path}` has schema version {found} (an older keygate); it must be migrated to version {current} before use",
        current = crate::schema::SCHEMA_VERSION
    )]
    OldSchema {
        /// Data directory.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// A delta was asked for from a sequence the store has not passed.
    #[error(
        "nothing to put in a delta since sequence {since}: the store is at sequence {sequence}"
    )]
    NothingSince {
        /// The base asked for.
        since: u64,
        /// The store's sequence.
        sequence: u64,
    },
    /// Another process holds the store.
    #[error(
        "the keygate store at `{0}` is in use by another keygate process; try again when it has finished"
    )]
    Locked(PathBuf),
    /// The audit chain does not verify at this event.
    #[error(
        "the audit log does not verify at event {0}: that event was edited, or one before it was removed; the log was changed by someone without the issuer key"
    )]
    AuditBroken(u64),
    /// A running `keygate serve` holds the store.
    #[error("the keygate store at `{path}` is held by `keygate serve` at {url}")]
    Served {
        /// Data directory.
        path: PathBuf,
        /// Where the service said it listens.
        url: String,
    },
    /// The service (`--server`) refused a request: its status, its error
    /// code and message.
    #[error("{message}")]
    Remote {
        /// HTTP status.
        status: u16,
        /// The service's error code.
        code: String,
        /// The service's message.
        message: String,
    },
    /// A stored signed fact failed its signature check.
    #[error(
        "the stored {kind} `{id}` failed signature verification: it is not trusted, and the store may have been tampered with"
    )]
    Tampered {
        /// `key record`, `project registration` or `key tombstone`.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// The issuer key file is unusable.
    #[error("{0}")]
    Issuer(String),
    /// The system clock cannot be read (before 1970 or unavailable): no
    /// decision or change is made without a real time.
    #[error("the system clock cannot be read ({0}); refusing to decide or write without the time")]
    Clock(String),
    /// The operating system failed us (I/O, randomness).
    #[error("{0}")]
    System(String),
    /// The WebAssembly runtime failed (not a decision).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl Error {
    /// A stable machine name for the error (`--json` output, logs): the
    /// component's rule name for a policy error, the service's code for a
    /// remote one.
    pub fn code(&self) -> String {
        let name = match self {
            Error::Policy { code, .. } | Error::Remote { code, .. } => return code.clone(),
            Error::KeyLooking => "key-looking-input",
            Error::UnknownKey(_) => "unknown-key",
            Error::KeyDeleted(_) => "key-deleted",
            Error::UnknownProject(_) => "unknown-project",
            Error::ProjectDeleted(_) => "project-deleted",
            Error::ProjectInOtherOrganization { .. } => "wrong-organization",
            Error::NeedsOrganization => "needs-organization",
            Error::UnknownScope { .. } => "unknown-scope",
            Error::BadTokenName => "bad-token-name",
            Error::UnknownOrganization { .. } => "unknown-organization",
            Error::OrganizationDeleted(_) => "organization-deleted",
            Error::OrganizationExists(_) => "organization-exists",
            Error::OrganizationRecordMissing { .. } => "organization-record-missing",
            Error::OrganizationNotEmpty { .. } => "organization-not-empty",
            Error::UnknownAdminToken(_) => "unknown-admin-token",
            Error::BadPrefix(_) => "bad-prefix",
            Error::ReservedPrefix(_) => "reserved-prefix",
            Error::AlreadyInitialised(_) => "already-initialised",
            Error::NoStore(_) => "no-store",
            Error::Foreign(_) => "foreign-directory",
            Error::Corrupt { .. } => "corrupt-store",
            Error::OldSchema { .. } => "old-schema",
            Error::NothingSince { .. } => "nothing-since",
            Error::Locked(_) => "store-locked",
            Error::AuditBroken(_) => "audit-broken",
            Error::Served { .. } => "store-served",
            Error::Tampered { .. } => "tampered",
            Error::Issuer(_) => "issuer-key",
            Error::Clock(_) => "clock",
            Error::System(_) => "system",
            Error::Runtime(_) => "runtime",
        };
        name.to_string()
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
