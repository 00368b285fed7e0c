//! The embedded component and the wasmtime runtime around it.
//!
//! One [`Runtime`] per process holds the `Engine` and the pre-linked
//! component; each [`Module`] is a cheap instance of it (its own `Store`).
//! The component imports nothing, so the linker is empty: the module cannot
//! reach files, clocks, randomness or the network.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Engine, Store};

/// wasmtime bindings generated from `wit/keygate.wit` (documented there).
///
/// Careful: the generated `Debug` of `issued-key` and `validation-request`
/// prints the key. [`Module::make_key`] returns the redacting
/// [`IssuedKey`](crate::runtime::IssuedKey) instead; never `Debug`-format a
/// request.
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "keygate",
        additional_derives: [PartialEq],
    });
    pub use exports::keygate::policy::types::*;
}

use bindings::{
    CreateRequest, Decision, DenyClass, DenyReason, EffectiveStatus, Evidence, ExpiryPolicy,
    IssuerError, IssuerKey, KeyError, KeyPolicy, KeyRecord, KeyStatus, Keygate, KeygatePre,
    LoadError, LoadOutcome, Organization, ParseError, ProjectRegistration, RecordError, Scope,
    SignedBody, SignedRecord, Snapshot, SnapshotError, SnapshotInfo, Text, Tombstone,
    ValidationRequest,
};

use crate::cache::{CacheKey, CacheOutcome};

/// The exact component bytes this host runs (built from `keygate-guest`).
pub const COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/keygate.wasm"));

/// SHA-256 of [`COMPONENT`], lowercase hex.
pub fn component_sha256() -> String {
    hex(component_digest())
}

/// SHA-256 of [`COMPONENT`], computed once per process.
fn component_digest() -> &'static [u8; 32] {
    static DIGEST: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    DIGEST.get_or_init(|| Sha256::digest(COMPONENT).into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A failure of the WebAssembly runtime itself (not a decision).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Compiling, instantiating or calling the component failed.
    #[error("webassembly runtime: {0}")]
    Wasm(String),
}

impl From<wasmtime::Error> for RuntimeError {
    fn from(e: wasmtime::Error) -> Self {
        RuntimeError::Wasm(format!("{e:#}"))
    }
}

/// The engine and the compiled, pre-linked component.
pub struct Runtime {
    engine: Engine,
    component: Component,
    pre: KeygatePre<Usage>,
}

impl Runtime {
    /// Compile the embedded component.
    pub fn new() -> Result<Self, RuntimeError> {
        Self::with_config(&wasmtime::Config::default())
    }

    /// Compile the embedded component with an engine of the caller's
    /// configuration (for instance `profiler(ProfilingStrategy::PerfMap)`,
    /// so that `perf` names the guest's functions). Nothing is cached.
    pub fn with_config(config: &wasmtime::Config) -> Result<Self, RuntimeError> {
        let engine = Engine::new(config)?;
        let component = Component::new(&engine, COMPONENT)?;
        Self::with(engine, component)
    }

    /// Load the compiled component from `cache_dir` if a file there is
    /// authenticated by `key`, else compile it and write the file. The
    /// outcome says whether a file was refused (the caller should warn).
    pub fn cached(cache_dir: &Path, key: &CacheKey) -> Result<(Self, CacheOutcome), RuntimeError> {
        let engine = Engine::default();
        let _ = std::fs::create_dir(cache_dir);
        // Never through a link: a `cache` that is not a real directory is
        // not used at all.
        if !std::fs::symlink_metadata(cache_dir).is_ok_and(|m| m.is_dir()) {
            let component = Component::new(&engine, COMPONENT)?;
            let outcome = CacheOutcome::Rejected {
                why: "the cache folder is not a directory keygate made (a symbolic link or a file)",
                written: false,
            };
            return Ok((Self::with(engine, component)?, outcome));
        }
        let (component, outcome) = crate::cache::load_or_compile(
            &engine,
            COMPONENT,
            component_digest(),
            &Self::cache_file(&engine, cache_dir),
            key,
        )?;
        Ok((Self::with(engine, component)?, outcome))
    }

    fn with(engine: Engine, component: Component) -> Result<Self, RuntimeError> {
        let linker = Linker::<Usage>::new(&engine);
        let pre = KeygatePre::new(linker.instantiate_pre(&component)?)?;
        Ok(Runtime {
            engine,
            component,
            pre,
        })
    }

    /// The cache file for this component and this engine's compiler settings.
    pub fn cache_file(engine: &Engine, dir: &Path) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let sha = hex(&component_digest()[..8]);
        dir.join(format!("keygate-{sha}-{:016x}.cwasm", h.finish()))
    }

    /// Names of the component's imports and exports, as the component model
    /// sees them (the imports list is empty: the module needs nothing).
    pub fn interface(&self) -> (Vec<String>, Vec<String>) {
        let ty = self.component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        (imports, exports)
    }

    /// A fresh instance of the component.
    pub fn instantiate(&self) -> Result<Module, RuntimeError> {
        let mut store = Store::new(&self.engine, Usage::default());
        store.limiter(|usage| usage);
        let inner = self.pre.instantiate(&mut store)?;
        Ok(Module { store, inner })
    }
}

/// A key just made by the component. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedKey {
    key: String,
    /// The public key id.
    pub id: String,
    /// SHA-256 of the key: the only form that is stored.
    pub key_hash: Vec<u8>,
}

impl IssuedKey {
    /// A key received whole (from the service, which made it): its id and
    /// SHA-256 alongside.
    pub fn received(key: String, id: String) -> IssuedKey {
        let key_hash = Sha256::digest(key.as_bytes()).to_vec();
        IssuedKey { key, id, key_hash }
    }

    /// The key string, for its one-time display.
    pub fn expose_key(&self) -> &str {
        &self.key
    }
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("key", &"<redacted>")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// One instance of the component. Every method is one call into it.
pub struct Module {
    store: Store<Usage>,
    inner: Keygate,
}

/// What an instance's store keeps count of: the bytes of linear memory the
/// guest grew to (it never shrinks), so a validator's footprint can be told
/// apart from the host's.
#[derive(Debug, Default)]
struct Usage {
    memory: usize,
}

impl wasmtime::ResourceLimiter for Usage {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.memory = self.memory.saturating_add(desired.saturating_sub(current));
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// A `snapshot-writer` resource living inside a [`Module`].
#[derive(Debug, Clone, Copy)]
pub struct WriterHandle(ResourceAny);

/// A `validator` resource living inside a [`Module`].
#[derive(Debug, Clone, Copy)]
pub struct ValidatorHandle(ResourceAny);

/// One call into the `policy` interface.
macro_rules! call {
    ($self:ident, $name:ident $(, $arg:expr)*) => {
        Ok($self.inner.keygate_policy_policy().$name(&mut $self.store $(, $arg)*)?)
    };
}

impl Module {
    /// The bytes of linear memory this instance's guest holds: everything
    /// its validators keep lives there.
    pub fn linear_memory_bytes(&self) -> usize {
        self.store.data().memory
    }

    /// `parse-key`.
    pub fn parse_key(
        &mut self,
        presented: &str,
    ) -> Result<Result<String, ParseError>, RuntimeError> {
        call!(self, call_parse_key, presented)
    }

    /// `looks-like-key`.
    pub fn looks_like_key(
        &mut self,
        text: &str,
        prefix: Option<&str>,
    ) -> Result<bool, RuntimeError> {
        call!(self, call_looks_like_key, text, prefix)
    }

    /// `make-key`, wrapped so that the key cannot be `Debug`-printed.
    pub fn make_key(
        &mut self,
        prefix: &str,
        random: &[u8],
    ) -> Result<Result<IssuedKey, KeyError>, RuntimeError> {
        let made =
            self.inner
                .keygate_policy_policy()
                .call_make_key(&mut self.store, prefix, random)?;
        Ok(made.map(|k| IssuedKey {
            key: k.key,
            id: k.id,
            key_hash: k.key_hash,
        }))
    }

    /// `check-create`.
    pub fn check_create(
        &mut self,
        req: &CreateRequest,
    ) -> Result<Result<KeyRecord, RecordError>, RuntimeError> {
        call!(self, call_check_create, req)
    }

    /// `register-project`.
    pub fn register_project(
        &mut self,
        id: &str,
        organization: &str,
        name: &str,
        now: u64,
    ) -> Result<Result<ProjectRegistration, RecordError>, RuntimeError> {
        call!(self, call_register_project, id, organization, name, now)
    }

    /// `delete-project`.
    pub fn delete_project(
        &mut self,
        reg: &ProjectRegistration,
        now: u64,
    ) -> Result<Result<ProjectRegistration, RecordError>, RuntimeError> {
        call!(self, call_delete_project, reg, now)
    }

    /// `register-organization`.
    pub fn register_organization(
        &mut self,
        slug: &str,
        name: &str,
        now: u64,
    ) -> Result<Result<Organization, RecordError>, RuntimeError> {
        call!(self, call_register_organization, slug, name, now)
    }

    /// `amend-organization`.
    pub fn amend_organization(
        &mut self,
        org: &Organization,
        policy: KeyPolicy,
        name: Option<&str>,
    ) -> Result<Result<Organization, RecordError>, RuntimeError> {
        call!(self, call_amend_organization, org, policy, name)
    }

    /// `delete-organization`.
    pub fn delete_organization(
        &mut self,
        org: &Organization,
        now: u64,
    ) -> Result<Result<Organization, RecordError>, RuntimeError> {
        call!(self, call_delete_organization, org, now)
    }

    /// `admits`.
    pub fn admits(
        &mut self,
        org: &Organization,
        record: &KeyRecord,
    ) -> Result<Result<(), RecordError>, RuntimeError> {
        call!(self, call_admits, org, record)
    }

    /// `permits-expiry`.
    pub fn permits_expiry(
        &mut self,
        policy: KeyPolicy,
        expiry: ExpiryPolicy,
    ) -> Result<Result<(), RecordError>, RuntimeError> {
        call!(self, call_permits_expiry, policy, expiry)
    }

    /// `make-tombstone`.
    pub fn make_tombstone(
        &mut self,
        id: &str,
        last: Option<&KeyRecord>,
        now: u64,
    ) -> Result<Result<Tombstone, RecordError>, RuntimeError> {
        call!(self, call_make_tombstone, id, last, now)
    }

    /// `encode`.
    pub fn encode(
        &mut self,
        body: &SignedBody,
    ) -> Result<Result<Vec<u8>, RecordError>, RuntimeError> {
        call!(self, call_encode, body)
    }

    /// `decode`.
    pub fn decode(
        &mut self,
        canonical: &[u8],
    ) -> Result<Result<SignedBody, RecordError>, RuntimeError> {
        call!(self, call_decode, canonical)
    }

    /// `open`: verify a signed fact against `trusted`, then decode it.
    pub fn open(
        &mut self,
        signed: &SignedRecord,
        trusted: &[IssuerKey],
    ) -> Result<Result<SignedBody, LoadError>, RuntimeError> {
        call!(self, call_open, signed, trusted)
    }

    /// `issuer-key-id`.
    pub fn issuer_key_id(
        &mut self,
        public_key: &[u8],
    ) -> Result<Result<String, IssuerError>, RuntimeError> {
        call!(self, call_issuer_key_id, public_key)
    }

    /// `grants-project`.
    pub fn grants_project(
        &mut self,
        record: &KeyRecord,
        project: &str,
    ) -> Result<bool, RuntimeError> {
        call!(self, call_grants_project, record, project)
    }

    /// `status-at`.
    pub fn status_at(
        &mut self,
        record: &KeyRecord,
        now: u64,
    ) -> Result<EffectiveStatus, RuntimeError> {
        call!(self, call_status_at, record, now)
    }

    /// `set-status`.
    pub fn set_status(
        &mut self,
        record: &KeyRecord,
        status: KeyStatus,
    ) -> Result<Result<KeyRecord, RecordError>, RuntimeError> {
        call!(self, call_set_status, record, status)
    }

    /// `retire`.
    pub fn retire(
        &mut self,
        record: &KeyRecord,
        successor: &str,
        now: u64,
        grace_seconds: u64,
    ) -> Result<Result<KeyRecord, RecordError>, RuntimeError> {
        call!(self, call_retire, record, successor, now, grace_seconds)
    }

    /// `check-issuer-key`.
    pub fn check_issuer_key(
        &mut self,
        key: &IssuerKey,
    ) -> Result<Result<(), IssuerError>, RuntimeError> {
        call!(self, call_check_issuer_key, key)
    }

    /// `evaluate`: one request against its evidence, every signature checked.
    pub fn evaluate(
        &mut self,
        req: &ValidationRequest,
        evidence: &Evidence,
        trusted: &[IssuerKey],
    ) -> Result<Decision, RuntimeError> {
        call!(self, call_evaluate, req, evidence, trusted)
    }

    /// `deny-reason-text`.
    pub fn deny_reason_text(&mut self, reason: DenyReason) -> Result<Text, RuntimeError> {
        call!(self, call_deny_reason_text, reason)
    }

    /// `classify-deny`: 401-like or 403-like.
    pub fn classify_deny(&mut self, reason: DenyReason) -> Result<DenyClass, RuntimeError> {
        call!(self, call_classify_deny, reason)
    }

    /// `record-error-text`.
    pub fn record_error_text(&mut self, error: &RecordError) -> Result<Text, RuntimeError> {
        call!(self, call_record_error_text, error)
    }

    /// `scope-name`.
    pub fn scope_name(&mut self, scope: Scope) -> Result<String, RuntimeError> {
        call!(self, call_scope_name, scope)
    }

    /// `scope-named`.
    pub fn scope_named(&mut self, name: &str) -> Result<Option<Scope>, RuntimeError> {
        call!(self, call_scope_named, name)
    }

    /// `scopes`.
    pub fn scopes(&mut self) -> Result<Vec<Scope>, RuntimeError> {
        call!(self, call_scopes)
    }

    /// `encode-snapshot`.
    pub fn encode_snapshot(
        &mut self,
        snapshot: &Snapshot,
    ) -> Result<Result<Vec<u8>, RecordError>, RuntimeError> {
        call!(self, call_encode_snapshot, snapshot)
    }

    /// `inspect-snapshot`.
    pub fn inspect_snapshot(
        &mut self,
        file: &[u8],
        trusted: &[IssuerKey],
    ) -> Result<Result<SnapshotInfo, SnapshotError>, RuntimeError> {
        call!(self, call_inspect_snapshot, file, trusted)
    }

    /// `validator.load-snapshot`.
    pub fn validator_load_snapshot(
        &mut self,
        v: ValidatorHandle,
        file: &[u8],
    ) -> Result<Result<SnapshotInfo, SnapshotError>, RuntimeError> {
        Ok(self
            .inner
            .keygate_policy_policy()
            .validator()
            .call_load_snapshot(&mut self.store, v.0, file)?)
    }

    /// `validator.load-snapshot-hex`.
    pub fn validator_load_snapshot_hex(
        &mut self,
        v: ValidatorHandle,
        file_hex: &str,
    ) -> Result<Result<SnapshotInfo, SnapshotError>, RuntimeError> {
        Ok(self
            .inner
            .keygate_policy_policy()
            .validator()
            .call_load_snapshot_hex(&mut self.store, v.0, file_hex)?)
    }

    /// A snapshot file loaded in pieces of `piece` bytes
    /// (`validator.begin-snapshot`, `snapshot-stream.feed`,
    /// `validator.finish-snapshot`): the guest, whose memory never
    /// shrinks, never holds the whole file, only what the validator keeps.
    /// Answers what `validator.load-snapshot` of the whole file answers.
    pub fn validator_load_snapshot_in_pieces(
        &mut self,
        v: ValidatorHandle,
        file: &[u8],
        piece: usize,
    ) -> Result<Result<SnapshotInfo, SnapshotError>, RuntimeError> {
        let Some(at) = file.len().checked_sub(64) else {
            return Ok(Err(SnapshotError::NotCanonical));
        };
        let (canonical, signature) = file.split_at(at);
        let policy = self.inner.keygate_policy_policy();
        let stream = policy
            .validator()
            .call_begin_snapshot(&mut self.store, v.0, signature)?;
        for piece in canonical.chunks(piece.max(1)) {
            if let Err(e) = policy
                .snapshot_stream()
                .call_feed(&mut self.store, stream, piece)?
            {
                stream.resource_drop(&mut self.store)?;
                return Ok(Err(e));
            }
        }
        Ok(policy
            .validator()
            .call_finish_snapshot(&mut self.store, v.0, stream)?)
    }

    /// A `snapshot-writer` for a snapshot (`base` none) or a delta.
    pub fn snapshot_writer(
        &mut self,
        issuer_key_id: &str,
        sequence: u64,
        base: Option<u64>,
        made_at: u64,
    ) -> Result<WriterHandle, RuntimeError> {
        Ok(WriterHandle(
            self.inner
                .keygate_policy_policy()
                .snapshot_writer()
                .call_constructor(&mut self.store, issuer_key_id, sequence, base, made_at)?,
        ))
    }

    /// `snapshot-writer.add`: facts in their canonical bytes.
    pub fn snapshot_writer_add(
        &mut self,
        w: WriterHandle,
        facts: &[Vec<u8>],
    ) -> Result<Result<(), RecordError>, RuntimeError> {
        Ok(self
            .inner
            .keygate_policy_policy()
            .snapshot_writer()
            .call_add(&mut self.store, w.0, facts)?)
    }

    /// `snapshot-writer.finish`: the canonical bytes to sign.
    pub fn snapshot_writer_finish(
        &mut self,
        w: WriterHandle,
    ) -> Result<Result<Vec<u8>, RecordError>, RuntimeError> {
        let out = self
            .inner
            .keygate_policy_policy()
            .snapshot_writer()
            .call_finish(&mut self.store, w.0)?;
        w.0.resource_drop(&mut self.store)?;
        Ok(out)
    }

    /// `validator.authorize`: the hot path from a loaded snapshot.
    pub fn validator_authorize(
        &mut self,
        v: ValidatorHandle,
        presented_key: &str,
        project: &str,
        action: Scope,
        now: u64,
    ) -> Result<bindings::Authorization, RuntimeError> {
        Ok(self
            .inner
            .keygate_policy_policy()
            .validator()
            .call_authorize(&mut self.store, v.0, presented_key, project, action, now)?)
    }

    /// `validator.sequence`.
    pub fn validator_sequence(&mut self, v: ValidatorHandle) -> Result<Option<u64>, RuntimeError> {
        Ok(self
            .inner
            .keygate_policy_policy()
            .validator()
            .call_sequence(&mut self.store, v.0)?)
    }

    /// `validator` constructor.
    pub fn validator(&mut self, trusted: &[IssuerKey]) -> Result<ValidatorHandle, RuntimeError> {
        let r = self
            .inner
            .keygate_policy_policy()
            .validator()
            .call_constructor(&mut self.store, trusted)?;
        Ok(ValidatorHandle(r))
    }

    /// `validator.load`.
    pub fn validator_load(
        &mut self,
        v: ValidatorHandle,
        record: &SignedRecord,
    ) -> Result<Result<LoadOutcome, LoadError>, RuntimeError> {
        Ok(self.inner.keygate_policy_policy().validator().call_load(
            &mut self.store,
            v.0,
            record,
        )?)
    }

    /// `validator.forget`.
    pub fn validator_forget(&mut self, v: ValidatorHandle, id: &str) -> Result<bool, RuntimeError> {
        Ok(self
            .inner
            .keygate_policy_policy()
            .validator()
            .call_forget(&mut self.store, v.0, id)?)
    }

    /// `validator.check`: the hot path, no signature work.
    pub fn validator_check(
        &mut self,
        v: ValidatorHandle,
        req: &ValidationRequest,
    ) -> Result<Decision, RuntimeError> {
        Ok(self
            .inner
            .keygate_policy_policy()
            .validator()
            .call_check(&mut self.store, v.0, req)?)
    }

    /// `validator.len`.
    pub fn validator_len(&mut self, v: ValidatorHandle) -> Result<u32, RuntimeError> {
        Ok(self
            .inner
            .keygate_policy_policy()
            .validator()
            .call_len(&mut self.store, v.0)?)
    }
}
