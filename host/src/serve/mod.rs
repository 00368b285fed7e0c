//! `keygate serve`: the validation and admin service. It owns the store
//! (keygate's lock is held for as long as it runs) and answers over HTTP:
//!
//! - `POST /v1/keys/verify`: the key in `Authorization: Bearer`, decided by
//!   validators inside the component (one instance each, every verified
//!   fact held in memory, fed by the store's own snapshots), kept current by
//!   every admin change before that change is answered;
//! - the admin API under `/v1/` (projects, keys, audit, issuer, snapshots),
//!   behind admin tokens (`keygate admin-token`);
//! - `/healthz`, `/readyz`, `/metrics` (Prometheus text format).
//!
//! Connections are served by hyper with a header-read timeout, behind a
//! connection limit; requests have a body limit and a time limit; SIGTERM
//! and SIGINT stop accepting, let in-flight requests finish, and release
//! the store. Logs are JSON lines on stderr and never carry a key, a token
//! or a request body.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::admin::tokens::TOKEN_PREFIX;
use crate::admin::{self, Access, AdminToken, KeySpec, Keygate, audit_json, decision_json};
use crate::error::Error;
use crate::runtime::bindings::{Decision, ExpiryPolicy, KeyStatus, Scope, ValidationRequest};
use crate::runtime::{Module, ValidatorHandle};

mod page;
mod session;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Validator instances (each serves one request at a time).
    pub validators: usize,
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// Time a request may take in all.
    pub request_timeout: Duration,
    /// Time in-flight requests get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// On a store with no admin token at all, make one deployment token
    /// once listening, for the sign-in link (the page's first run).
    pub first_run_token: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            validators: default_validators(),
            max_connections: 1024,
            body_limit: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            first_run_token: false,
        }
    }
}

/// One validator: its own component instance and the `validator` in it.
struct Slot {
    module: Module,
    validator: ValidatorHandle,
    /// Every scope by its name, asked of the component once: no call per
    /// request to resolve the action.
    scopes: Vec<(String, Scope)>,
}

/// The validators that answer `verify`, and the store sequence they hold.
struct Pool {
    slots: Vec<Mutex<Slot>>,
    next: AtomicUsize,
    sequence: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a lock is held cannot leave a half-made change here: the
    // store commits atomically and a validator loads a snapshot atomically.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Hand the heap's free pages back to the system (glibc keeps the memory of
/// the many small allocations a full snapshot made, hundreds of MB at a
/// million keys, as the process's own).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointer and has no precondition: it
    // only returns free memory at the top of, and (glibc 2.8 and later)
    // whole free pages inside, the heap's arenas to the system. Live
    // allocations are untouched, so nothing any Rust code holds can change.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One validator for every four CPUs, at least one. A validator holds every
/// key (about 110 bytes each: 110 MB at a million keys), and a decision
/// holds it for about a microsecond of a request that spends tens in HTTP
/// and JSON: measured with `wrk` on 2 cores at a million keys, two
/// validators answered 1 to 2% more requests a second than one (within the
/// spread between runs) for 110 MB more.
fn default_validators() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(4))
}

/// How much of a snapshot file is copied into a validator's memory at a
/// time: the whole file would stay there as free space for the life of the
/// validator (110 MB at a million keys), a piece takes only its own size.
const SNAPSHOT_PIECE: usize = 1 << 20;

impl Pool {
    fn new(kg: &mut Keygate, n: usize) -> Result<Pool, Error> {
        kg.keep_written(true);
        let full = kg.snapshot(admin::now()?, None)?;
        let full_sequence = full.info.sequence;
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            slots.push(Mutex::new(Self::slot(kg, &full.bytes)?));
        }
        drop(full);
        release_free_memory();
        Ok(Pool {
            slots,
            next: AtomicUsize::new(0),
            sequence: AtomicU64::new(full_sequence),
        })
    }

    /// A fresh validator holding the full snapshot `file`.
    fn slot(kg: &mut Keygate, file: &[u8]) -> Result<Slot, Error> {
        let mut module = kg.new_module()?;
        let validator = module.validator(&[kg.issuer().trusted()])?;
        match module.validator_load_snapshot_in_pieces(validator, file, SNAPSHOT_PIECE)? {
            Ok(_) => {
                let mut scopes = Vec::new();
                for s in module.scopes()? {
                    scopes.push((module.scope_name(s)?, s));
                }
                Ok(Slot {
                    module,
                    validator,
                    scopes,
                })
            }
            Err(e) => Err(Error::System(format!(
                "a validator refused the store's own snapshot: {e:?}"
            ))),
        }
    }

    /// Run `f` on a free validator (or wait for one).
    fn with<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> R {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Ok(mut slot) = self.slots[(start + i) % n].try_lock() {
                return f(&mut slot);
            }
        }
        f(&mut lock(&self.slots[start]))
    }

    /// Bring every validator to the store's sequence: a delta since the
    /// held sequence, or, if a validator refuses it, a full snapshot.
    fn refresh(&self, kg: &mut Keygate) -> Result<(), Error> {
        let sequence = kg.sequence()?;
        let held = self.sequence.load(Ordering::Acquire);
        if sequence <= held {
            return Ok(());
        }
        // The facts the service itself just wrote, or (after a gap) a
        // delta computed from the store.
        let delta = match kg.recent_delta(held, admin::now()?)? {
            Some(d) => d,
            None => kg.snapshot(admin::now()?, Some(held))?,
        };
        let mut full = None;
        for slot in &self.slots {
            let taken = {
                let mut slot = lock(slot);
                let v = slot.validator;
                // A refusal or a trap in the guest: either way this
                // validator does not hold the change, and is replaced.
                matches!(
                    slot.module
                        .validator_load_snapshot_in_pieces(v, &delta.bytes, SNAPSHOT_PIECE),
                    Ok(Ok(_))
                )
            };
            if !taken {
                // A fresh validator from a full snapshot, made without
                // holding this one (it keeps answering meanwhile, as it did
                // before the change: seconds at a million keys; the change
                // is answered only after), then put in its place; the old
                // one is dropped after the slot is released.
                let file = match &full {
                    Some(f) => f,
                    None => full.insert(kg.snapshot(admin::now()?, None)?.bytes),
                };
                let fresh = Self::slot(kg, file)?;
                let old = std::mem::replace(&mut *lock(slot), fresh);
                drop(old);
            }
        }
        self.sequence.store(sequence, Ordering::Release);
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    result: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    verify_seconds: Histogram,
    admin: Family<StatusLabels, Counter>,
    snapshots: Family<StatusLabels, Counter>,
    deltas: Family<SourceLabels, Counter>,
    sequence: Gauge,
    refused_connections: Counter,
    commit_batch: Histogram,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("keygate");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Verify decisions, by result and deny reason",
            decisions.clone(),
        );
        // 20 µs to about 0.65 s.
        let verify_seconds = Histogram::new(exponential_buckets(0.000_02, 2.0, 16));
        registry.register(
            "verify_duration_seconds",
            "Time to answer a verify request, from its arrival to its answer",
            verify_seconds.clone(),
        );
        let admin = Family::<StatusLabels, Counter>::default();
        registry.register(
            "admin_requests",
            "Admin API requests, by HTTP status",
            admin.clone(),
        );
        let snapshots = Family::<StatusLabels, Counter>::default();
        registry.register(
            "snapshot_requests",
            "Snapshot requests, by HTTP status",
            snapshots.clone(),
        );
        let deltas = Family::<SourceLabels, Counter>::default();
        registry.register(
            "snapshot_deltas",
            "Deltas served, by where their facts came from: recent (this service's own last commits, kept in memory) or store (a read of the whole store)",
            deltas.clone(),
        );
        let sequence = Gauge::default();
        registry.register(
            "store_sequence",
            "The store's admin-write sequence held by the validators",
            sequence.clone(),
        );
        let refused_connections = Counter::default();
        registry.register(
            "refused_connections",
            "Connections closed at once because the connection limit was reached",
            refused_connections.clone(),
        );
        // 1 to 1,024 keys.
        let commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "key_creations_per_commit",
            "Keys created by one group commit (one transaction, one flush and sync)",
            commit_batch.clone(),
        );
        Metrics {
            registry,
            decisions,
            verify_seconds,
            admin,
            snapshots,
            deltas,
            sequence,
            refused_connections,
            commit_batch,
        }
    }
}

struct App {
    admin: Mutex<Keygate>,
    pool: Pool,
    metrics: Metrics,
    failures: Failures,
    /// Set at shutdown: admin operations still queued are not started.
    stopping: std::sync::atomic::AtomicBool,
    /// Keys that allowed a request since the last flush, and when (written
    /// to the store in batches, off the decision's path).
    uses: Mutex<std::collections::HashMap<String, u64>>,
    /// Key creations waiting for the next group commit.
    creations: Mutex<Vec<PendingCreate>>,
    /// The page's browser sessions.
    sessions: session::Sessions,
}

impl App {
    /// Write the recorded uses (at most once a minute per key: fresher
    /// ones are skipped).
    fn flush_uses(&self) {
        self.flush_uses_into(&mut lock(&self.admin));
    }

    /// The same, with the store already in hand (an admin operation shows
    /// uses up to its own start).
    fn flush_uses_into(&self, kg: &mut Keygate) {
        let batch: Vec<(String, u64)> = lock(&self.uses).drain().collect();
        if batch.is_empty() {
            return;
        }
        if let Err(e) = kg.record_uses(&batch) {
            tracing::warn!(error = %e, "could not record key uses");
        }
    }
}

tokio::task_local! {
    /// When the request being served arrived.
    static ARRIVED: Instant;
}

/// An admin operation that has not started this long after its request
/// arrived is not started at all (503): the request's own time limit
/// (30 s) would answer it 408 while it still ran, and a change must never
/// be made after its caller was told it failed.
const ADMIN_START_LIMIT: Duration = Duration::from_secs(20);

/// The client address of a request (put there by the accept loop).
#[derive(Clone, Copy, Debug)]
struct Peer(std::net::IpAddr);

/// Failed authentications (401 answers) per client address: past
/// [`Failures::LIMIT`] in [`Failures::WINDOW`], the address gets 429 until
/// the window ends. Tokens and keys are 256-bit secrets, so this is not
/// about guessing them: it keeps a flood of bad credentials from queueing
/// on the store's lock.
struct Failures {
    seen: Mutex<std::collections::HashMap<std::net::IpAddr, (Instant, u32)>>,
}

impl Failures {
    const LIMIT: u32 = 30;
    const WINDOW: Duration = Duration::from_secs(10);

    /// Seconds until `ip` may try again, if it is blocked now.
    fn blocked(&self, ip: std::net::IpAddr) -> Option<u64> {
        let seen = lock(&self.seen);
        let (start, count) = seen.get(&ip)?;
        let left = Self::WINDOW.checked_sub(start.elapsed())?;
        (*count >= Self::LIMIT).then(|| left.as_secs().max(1))
    }

    fn failed(&self, ip: std::net::IpAddr) {
        let mut seen = lock(&self.seen);
        if seen.len() > 100_000 {
            seen.retain(|_, (start, _)| start.elapsed() < Self::WINDOW);
        }
        let entry = seen.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= Self::WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// 429 for an address past its failed-authentication budget; counts 401s.
async fn limit_failures(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<Peer>().copied();
    // The page's own files are never refused: behind a shared proxy one
    // address is everyone's.
    let page = matches!(req.uri().path(), "/" | "/app.js" | "/app.css");
    if let Some(Peer(ip)) = peer
        && !page
        && let Some(wait) = app.failures.blocked(ip)
    {
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-failures",
            "too many failed authentications from this address; wait and try again",
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let response = next.run(req).await;
    if response.status() == StatusCode::UNAUTHORIZED
        && let Some(Peer(ip)) = peer
    {
        app.failures.failed(ip);
    }
    response
}

/// An error answer: `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone)]
struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    fn unauthenticated(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let (status, code) = match &e {
            // The component's own rule name (`name-empty`, ...).
            Error::Policy { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code.as_str()),
            Error::KeyLooking => (StatusCode::BAD_REQUEST, "key-looking-input"),
            Error::UnknownKey(_)
            | Error::UnknownProject(_)
            | Error::UnknownOrganization { .. }
            | Error::UnknownAdminToken(_) => (StatusCode::NOT_FOUND, "not-found"),
            Error::KeyDeleted(_) | Error::ProjectDeleted(_) | Error::OrganizationDeleted(_) => {
                (StatusCode::GONE, "deleted")
            }
            Error::OrganizationExists(_)
            | Error::OrganizationNotEmpty { .. }
            | Error::OrganizationRecordMissing { .. } => (StatusCode::CONFLICT, "conflict"),
            Error::ProjectInOtherOrganization { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "wrong-organization")
            }
            Error::NeedsOrganization | Error::BadTokenName => {
                (StatusCode::BAD_REQUEST, "bad-request")
            }
            Error::UnknownScope { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unknown-scope"),
            Error::NothingSince { .. } => (StatusCode::BAD_REQUEST, "bad-request"),
            Error::Tampered { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "tampered"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            // The cause (a path, an OS error) is for the operator's log.
            tracing::error!(error = %e, "request failed");
            return ApiError::new(
                status,
                code,
                "internal error; the service's log has the cause",
            );
        }
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        // Whatever a message quotes from the request, it never repeats
        // something that looks like a key or a token.
        if keygate_policy::looks_like_key(&self.message, None) {
            self.message = "the request holds something that looks like an API key or a token (not repeated here); keys and tokens go only in the Authorization header".into();
        }
        let mut r = (
            self.status,
            axum::Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keygate\""),
            );
        }
        r
    }
}

type ApiResult = Result<Response, ApiError>;

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// The bearer credential of a request (RFC 6750: the scheme is
/// case-insensitive). Never logged, never echoed.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = value.to_str().ok()?;
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_matches(' ');
    (!token.is_empty() && !token.contains(' ')).then(|| token.to_string())
}

/// A JSON body: `application/json`, known fields only.
fn body<T: for<'de> Deserialize<'de>>(headers: &HeaderMap, bytes: &Bytes) -> Result<T, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the body as Content-Type: application/json",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let status = if e.is_data() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        // serde_json's messages name fields and types, never echo values.
        ApiError::new(
            status,
            "bad-body",
            format!("the JSON body is not accepted: {e}"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    project: String,
    #[serde(default = "default_action")]
    action: String,
    /// Decide as of this time (seconds since 1970) instead of now: "would
    /// this key be allowed then?".
    at: Option<u64>,
}

fn default_action() -> String {
    "trigger-workflows".into()
}

/// `POST /v1/keys/verify`. 200 with the decision (the CLI's `--json`
/// fields); 401 only when no bearer key was sent at all.
async fn verify(State(app): State<Arc<App>>, headers: HeaderMap, bytes: Bytes) -> ApiResult {
    let started = Instant::now();
    let key = bearer(&headers).ok_or_else(|| {
        ApiError::unauthenticated("send the API key as Authorization: Bearer <key>")
    })?;
    let req: VerifyBody = body(&headers, &bytes)?;
    let at = match req.at {
        // Deciding as of another time is an operator's question ("would
        // this key work then?"): a key holder could otherwise have an
        // expired key allowed by asking about the past.
        Some(at) => {
            authenticate(&app, headers.get(ADMIN_TOKEN_HEADER)).await?;
            at
        }
        None => admin::now()?,
    };
    let answer = app.pool.with(|slot| decide(slot, &key, &req, at))?;
    if req.at.is_none()
        && answer["decision"] == "allow"
        && let Some(id) = answer["key_id"].as_str()
    {
        lock(&app.uses).insert(id.to_string(), at);
    }
    let (result, reason) = match answer.get("reason").and_then(Value::as_str) {
        Some(r) => ("deny", r.to_string()),
        None => ("allow", String::new()),
    };
    app.metrics
        .decisions
        .get_or_create(&DecisionLabels {
            result: result.into(),
            reason: reason.clone(),
        })
        .inc();
    app.metrics
        .verify_seconds
        .observe(started.elapsed().as_secs_f64());
    // The project is the caller's text (it could hold anything): not logged.
    tracing::info!(decision = result, reason = %reason, "verify");
    Ok(json_response(StatusCode::OK, answer))
}

/// The header that carries an admin token on a verify request asking about
/// another time than now (`at`).
pub const ADMIN_TOKEN_HEADER: &str = "keygate-admin-token";

/// A live admin token (any scope) from a header value, or 401.
async fn authenticate(app: &Arc<App>, value: Option<&HeaderValue>) -> Result<AdminToken, ApiError> {
    let presented = value.and_then(|v| v.to_str().ok()).map(str::to_string);
    let app = app.clone();
    let found = tokio::task::spawn_blocking(move || -> Result<Option<AdminToken>, ApiError> {
        match presented {
            Some(t) if t.starts_with(TOKEN_PREFIX) => Ok(lock(&app.admin).authenticate_admin(&t)?),
            _ => Ok(None),
        }
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the operation failed",
        )
    })??;
    found.ok_or_else(|| {
        ApiError::unauthenticated(
            "deciding as of another time (`at`) needs a live admin token in the Keygate-Admin-Token header",
        )
    })
}

fn decide(slot: &mut Slot, key: &str, req: &VerifyBody, at: u64) -> Result<Value, ApiError> {
    let Some(action) = slot
        .scopes
        .iter()
        .find_map(|(name, s)| (*name == req.action).then_some(*s))
    else {
        let known: Vec<&str> = slot.scopes.iter().map(|(n, _)| n.as_str()).collect();
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-scope",
            format!("unknown action (known: {})", known.join(", ")),
        ));
    };
    let m = &mut slot.module;
    let request = ValidationRequest {
        presented_key: key.to_string(),
        project: req.project.clone(),
        action,
        now: at,
    };
    let decision = m
        .validator_check(slot.validator, &request)
        .map_err(Error::from)?;
    let (text, class, key_id) = match &decision {
        Decision::Allow(_) => (None, None, None),
        Decision::Deny(r) => (
            Some(m.deny_reason_text(*r).map_err(Error::from)?),
            Some(m.classify_deny(*r).map_err(Error::from)?),
            m.parse_key(key).map_err(Error::from)?.ok(),
        ),
    };
    Ok(decision_json(
        &decision,
        text.as_ref(),
        class,
        key_id.as_deref(),
        &req.project,
        &req.action,
        at,
    ))
}

/// Who may do what: read needs any live token, write a token that is not
/// read-only.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Read,
    Write,
}

/// Run an admin operation: authenticate, run `f` on the store (off the
/// async workers: writes are flushed to disk), bring the validators up to
/// date after a write, and answer.
async fn admin_op(
    app: Arc<App>,
    headers: &HeaderMap,
    need: Need,
    f: impl FnOnce(&mut Keygate, &AdminToken, u64) -> ApiResult + Send + 'static,
) -> ApiResult {
    let credential = Credential::of(headers);
    let arrived = ARRIVED.try_with(|t| *t).unwrap_or_else(|_| Instant::now());
    let task = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || {
            let mut kg = lock(&app.admin);
            if app.stopping.load(Ordering::Acquire) || arrived.elapsed() > ADMIN_START_LIMIT {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the service is busy or stopping; the operation was not started, try again",
                ));
            }
            let token = credential.token(&app, &mut kg)?;
            if need == Need::Write && token.read_only {
                return Err(ApiError::forbidden("this admin token is read-only"));
            }
            let at = admin::now()?;
            app.flush_uses_into(&mut kg);
            kg.set_actor(format!("admin token {} ({})", token.id, token.name));
            let answer = f(&mut kg, &token, at).map_err(|e| hide_elsewhere(&token, e));
            if need == Need::Write {
                app.pool.refresh(&mut kg)?;
                app.metrics.sequence.set(
                    i64::try_from(app.pool.sequence.load(Ordering::Acquire)).unwrap_or(i64::MAX),
                );
            }
            tracing::info!(token = %token.id, "admin");
            answer
        })
    };
    let answer = match task.await {
        Ok(answer) => answer,
        Err(_) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the operation failed",
        )),
    };
    count_admin(&app, &answer);
    answer
}

/// Count an admin answer by status.
fn count_admin(app: &App, answer: &ApiResult) {
    let status = match answer {
        Ok(r) => r.status(),
        Err(e) => e.status,
    };
    app.metrics
        .admin
        .get_or_create(&StatusLabels {
            status: status.as_u16().to_string(),
        })
        .inc();
}

/// How an admin request authenticates: an admin token (`Authorization:
/// Bearer`), or the page's session cookie with its CSRF header.
enum Credential {
    Token(Option<String>),
    Session {
        cookies: Vec<String>,
        csrf: Option<String>,
    },
}

impl Credential {
    fn of(headers: &HeaderMap) -> Credential {
        let cookies = session::cookies(headers);
        match bearer(headers) {
            None if !cookies.is_empty() => Credential::Session {
                cookies,
                csrf: session::csrf(headers),
            },
            token => Credential::Token(token),
        }
    }

    /// The live admin token behind the credential, or 401 (403 for a
    /// session request without its CSRF token).
    fn token(&self, app: &App, kg: &mut Keygate) -> Result<AdminToken, ApiError> {
        match self {
            Credential::Token(token) => {
                let found = match token {
                    Some(t) if t.starts_with(TOKEN_PREFIX) => kg.authenticate_admin(t)?,
                    _ => None,
                };
                found.ok_or_else(|| {
                    ApiError::unauthenticated(
                        "send a live admin token as Authorization: Bearer kgadmin_…",
                    )
                })
            }
            Credential::Session { cookies, csrf } => {
                let id = match app.sessions.resolve_any(cookies, csrf.as_deref()) {
                    Ok((_, id)) => id,
                    Err(session::Refused::Unknown) => {
                        return Err(ApiError::unauthenticated(
                            "the session ended; sign in again",
                        ));
                    }
                    Err(session::Refused::Csrf) => {
                        return Err(ApiError::forbidden(
                            "a session request needs its X-Keygate-CSRF header",
                        ));
                    }
                };
                match kg.live_admin_token(&id)? {
                    Some(t) => Ok(t),
                    None => {
                        app.sessions.close_token(&id);
                        Err(ApiError::unauthenticated(
                            "the admin token behind this session is no longer live; sign in again",
                        ))
                    }
                }
            }
        }
    }
}

/// For a token of one organization, whatever is not found, deleted, or
/// another organization's is one answer: 404. A key or project id of
/// another organization is not confirmed to exist.
fn hide_elsewhere(token: &AdminToken, e: ApiError) -> ApiError {
    let elsewhere = matches!(
        e.code.as_str(),
        "not-found" | "deleted" | "wrong-organization" | "other-organization"
    );
    if token.organization.is_some() && elsewhere {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "no such key or project in this token's organization",
        )
    } else {
        e
    }
}

/// The resource (a key or project named by id) is this token's to act on.
fn reach(token: &AdminToken, organization: &str) -> Result<(), ApiError> {
    if token.reaches(Some(organization)) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "other-organization",
            "this admin token reaches another organization",
        ))
    }
}

/// A listing's organization is this token's to read.
fn reach_listing(token: &AdminToken, organization: &str) -> Result<(), ApiError> {
    if token.reaches(Some(organization)) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "this admin token reaches another organization",
        ))
    }
}

/// The organization a listing is about: the `org` parameter, or the
/// token's own organization.
fn organization_of(token: &AdminToken, asked: Option<String>) -> Result<String, ApiError> {
    let org = match (asked, &token.organization) {
        (Some(o), _) => o,
        (None, Some(mine)) => mine.clone(),
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "name the organization: ?org=ORG",
            ));
        }
    };
    reach_listing(token, &org)?;
    Ok(org)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgQuery {
    org: Option<String>,
    project: Option<String>,
}

/// Organizations are the deployment's to make, change and delete: an
/// organization's own token reads it, never loosens its policy.
fn deployment_only(token: &AdminToken) -> Result<(), ApiError> {
    if token.organization.is_none() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "organizations are created, changed and deleted with a deployment admin token",
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrg {
    slug: String,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPolicy {
    require_expiry: bool,
    max_expiry_days: Option<u16>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CascadeQuery {
    #[serde(default)]
    cascade: bool,
}

async fn list_orgs(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    admin_op(app, &headers, Need::Read, move |kg, token, _| {
        let (orgs, _) = kg.list_organizations()?;
        Ok(json_response(
            StatusCode::OK,
            json!(
                orgs.iter()
                    .filter(|o| token.reaches(Some(&o.slug)))
                    .map(admin::OrgView::to_json)
                    .collect::<Vec<_>>()
            ),
        ))
    })
    .await
}

async fn create_org(State(app): State<Arc<App>>, headers: HeaderMap, bytes: Bytes) -> ApiResult {
    let req: NewOrg = body(&headers, &bytes)?;
    admin_op(app, &headers, Need::Write, move |kg, token, at| {
        deployment_only(token)?;
        let o = kg.create_organization(&req.slug, req.name.as_deref(), at)?;
        Ok(json_response(StatusCode::CREATED, o.to_json()))
    })
    .await
}

async fn show_org(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> ApiResult {
    admin_op(app, &headers, Need::Read, move |kg, token, at| {
        reach(token, &slug)?;
        let o = kg.show_organization(&slug, at)?;
        Ok(json_response(StatusCode::OK, o.to_json()))
    })
    .await
}

async fn set_policy(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let req: NewPolicy = body(&headers, &bytes)?;
    admin_op(app, &headers, Need::Write, move |kg, token, at| {
        deployment_only(token)?;
        let policy = admin::KeyPolicyView {
            require_expiry: req.require_expiry,
            max_expiry_days: req.max_expiry_days,
        };
        let set = kg.set_key_policy(&slug, policy, req.name.as_deref(), at)?;
        Ok(json_response(
            StatusCode::OK,
            json!({"organization": set.organization.to_json(), "changed": set.changed}),
        ))
    })
    .await
}

async fn delete_org(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Query(q): Query<CascadeQuery>,
) -> ApiResult {
    admin_op(app, &headers, Need::Write, move |kg, token, at| {
        deployment_only(token)?;
        let d = kg.delete_organization(&slug, q.cascade, at)?;
        Ok(json_response(
            StatusCode::OK,
            json!({
                "deleted_organization": d.organization.to_json(),
                "deleted_projects": d.projects,
                "deleted_keys": d.keys,
            }),
        ))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProject {
    org: String,
    name: String,
}

async fn list_projects(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<OrgQuery>,
) -> ApiResult {
    admin_op(app, &headers, Need::Read, move |kg, token, _| {
        let org = organization_of(token, q.org)?;
        let list = kg.list_projects(&org)?;
        Ok(json_response(
            StatusCode::OK,
            json!(
                list.projects
                    .iter()
                    .map(admin::ProjectView::to_json)
                    .collect::<Vec<_>>()
            ),
        ))
    })
    .await
}

async fn create_project(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let req: NewProject = body(&headers, &bytes)?;
    admin_op(app, &headers, Need::Write, move |kg, token, at| {
        reach_listing(token, &req.org)?;
        let p = kg.create_project(&req.org, &req.name, at)?;
        Ok(json_response(StatusCode::CREATED, p.to_json()))
    })
    .await
}

async fn show_project(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    admin_op(app, &headers, Need::Read, move |kg, token, _| {
        let p = kg.live_project(&id)?;
        reach(token, &p.organization)?;
        Ok(json_response(StatusCode::OK, p.to_json()))
    })
    .await
}

async fn delete_project(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    admin_op(app, &headers, Need::Write, move |kg, token, at| {
        let p = kg.live_project(&id)?;
        reach(token, &p.organization)?;
        let (p, keys) = kg.delete_project(&id, at)?;
        Ok(json_response(
            StatusCode::OK,
            json!({"deleted_project": p.to_json(), "deleted_keys": keys}),
        ))
    })
    .await
}

/// A new key: org-level (`org`, `access`) or project-level (`project`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    org: Option<String>,
    project: Option<String>,
    /// `"all-projects"` or a list of project ids (org-level keys).
    access: Option<Value>,
    /// 7 to 90, or null / absent for no expiry.
    expiry_days: Option<u16>,
    scopes: Option<Vec<String>>,
}

fn key_spec(req: NewKey) -> Result<KeySpec, ApiError> {
    let bad = |m: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad-body", m);
    let access = match (req.project, req.access) {
        (Some(p), None) => Access::OwnProject(p),
        (Some(_), Some(_)) => {
            return Err(bad(
                "a project-level key has no `access`: it acts on its project",
            ));
        }
        (None, Some(Value::String(s))) if s == "all-projects" => Access::AllProjects,
        (None, Some(Value::Array(ids))) if !ids.is_empty() => Access::Selected(
            ids.into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(bad("`access` lists project ids as strings")),
                })
                .collect::<Result<_, _>>()?,
        ),
        (None, _) => {
            return Err(bad(
                "choose the key's projects: \"access\": \"all-projects\" or a list of project ids, or \"project\" for a project-level key",
            ));
        }
    };
    Ok(KeySpec {
        organization: req.org,
        name: req.name,
        access,
        expiry: req
            .expiry_days
            .map_or(ExpiryPolicy::Never, ExpiryPolicy::Days),
        scopes: req
            .scopes
            .unwrap_or_else(|| vec!["trigger-workflows".to_string()]),
    })
}

/// `POST /v1/keys`, by group commit: the request joins the queue of
/// creations, and whichever request holds the store next commits every
/// creation queued by then in one transaction with one flush and sync
/// ([`Keygate::create_keys`]). No answer, and so no secret, leaves before
/// the commit that holds its key reached the disk.
async fn create_key(State(app): State<Arc<App>>, headers: HeaderMap, bytes: Bytes) -> ApiResult {
    let spec = key_spec(body(&headers, &bytes)?)?;
    let credential = Credential::of(&headers);
    let arrived = ARRIVED.try_with(|t| *t).unwrap_or_else(|_| Instant::now());
    let task = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || {
            let (answer, answered) = std::sync::mpsc::sync_channel(1);
            lock(&app.creations).push(PendingCreate {
                credential,
                arrived,
                spec,
                answer,
            });
            // Queued creations are taken only by the holder of the store,
            // and answered before it lets go. The answer is collected
            // without the store (a committed key's answer must not wait
            // behind other admin work and time out): whoever holds the
            // store next commits the queue, this request if it gets there
            // first.
            loop {
                match answered.try_recv() {
                    Ok(answer) => return answer,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        return Err(ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            "the operation failed",
                        ));
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => {}
                }
                let held = match app.admin.try_lock() {
                    Ok(kg) => Some(kg),
                    Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                    Err(std::sync::TryLockError::WouldBlock) => None,
                };
                if let Some(mut kg) = held {
                    // Ours may have been answered just before the store was
                    // let go; otherwise it is still queued.
                    if let Ok(answer) = answered.try_recv() {
                        return answer;
                    }
                    let queued = std::mem::take(&mut *lock(&app.creations));
                    commit_creations(&app, &mut kg, queued);
                    continue;
                }
                if let Ok(answer) = answered.recv_timeout(Duration::from_millis(1)) {
                    return answer;
                }
            }
        })
    };
    let answer = task.await.unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the operation failed",
        ))
    });
    count_admin(&app, &answer);
    answer
}

/// A key creation waiting for the next commit.
struct PendingCreate {
    credential: Credential,
    arrived: Instant,
    spec: KeySpec,
    answer: std::sync::mpsc::SyncSender<ApiResult>,
}

/// Check every queued creation as its own request (its token, its rights,
/// its organization), commit the ones that pass together, and answer each.
fn commit_creations(app: &App, kg: &mut Keygate, queued: Vec<PendingCreate>) {
    let at = match admin::now() {
        Ok(at) => at,
        Err(e) => {
            let e = ApiError::from(e);
            for p in queued {
                let _ = p.answer.try_send(Err(e.clone()));
            }
            return;
        }
    };
    app.flush_uses_into(kg);
    let mut specs = Vec::with_capacity(queued.len());
    let mut waiting = Vec::with_capacity(queued.len());
    for p in queued {
        if app.stopping.load(Ordering::Acquire) || p.arrived.elapsed() > ADMIN_START_LIMIT {
            let _ = p.answer.try_send(Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the service is busy or stopping; the operation was not started, try again",
            )));
            continue;
        }
        let checked = p.credential.token(app, kg).and_then(|token| {
            if token.read_only {
                return Err(ApiError::forbidden("this admin token is read-only"));
            }
            may_create(kg, &token, &p.spec)
                .map_err(|e| hide_elsewhere(&token, e))
                .map(|()| token)
        });
        match checked {
            Ok(token) => {
                specs.push((
                    p.spec,
                    Some(format!("admin token {} ({})", token.id, token.name)),
                ));
                waiting.push((p.answer, token));
            }
            Err(e) => {
                let _ = p.answer.try_send(Err(e));
            }
        }
    }
    if specs.is_empty() {
        return;
    }
    let n = specs.len();
    match kg.create_keys_by(specs, at) {
        Ok(results) => {
            for ((answer, token), created) in waiting.into_iter().zip(results) {
                tracing::info!(token = %token.id, "admin");
                let _ = answer.try_send(
                    created
                        .map(|c| {
                            let mut j = c.view.to_json();
                            j["key"] = json!(c.issued.expose_key());
                            json_response(StatusCode::CREATED, j)
                        })
                        .map_err(|e| hide_elsewhere(&token, e.into())),
                );
            }
        }
        Err(e) => {
            let e = ApiError::from(e);
            for (answer, token) in waiting {
                let _ = answer.try_send(Err(hide_elsewhere(&token, e.clone())));
            }
        }
    }
    // The keys are on disk and answered; validators learn of them next.
    if let Err(e) = app.pool.refresh(kg) {
        tracing::warn!(error = %e, "validators not refreshed after a write");
    }
    app.metrics
        .sequence
        .set(i64::try_from(app.pool.sequence.load(Ordering::Acquire)).unwrap_or(i64::MAX));
    app.metrics.commit_batch.observe(n as f64);
}

/// May this token create this key (the organization it names, or its
/// project's)?
fn may_create(kg: &mut Keygate, token: &AdminToken, spec: &KeySpec) -> Result<(), ApiError> {
    let org = match (&spec.organization, &spec.access) {
        (Some(o), _) => o.clone(),
        (None, Access::OwnProject(p)) => kg.live_project(p)?.organization,
        (None, _) => return Err(Error::NeedsOrganization.into()),
    };
    if spec.organization.is_some() {
        reach_listing(token, &org)
    } else {
        reach(token, &org)
    }
}

async fn list_keys(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<OrgQuery>,
) -> ApiResult {
    admin_op(app, &headers, Need::Read, move |kg, token, at| {
        let org = organization_of(token, q.org)?;
        let views = kg.list_keys(&org, q.project.as_deref(), at)?;
        Ok(json_response(
            StatusCode::OK,
            json!(
                views
                    .iter()
                    .map(admin::KeyView::to_json)
                    .collect::<Vec<_>>()
            ),
        ))
    })
    .await
}

async fn show_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    admin_op(app, &headers, Need::Read, move |kg, token, at| {
        let v = kg.show_key(&id, at)?;
        reach(token, &v.organization)?;
        Ok(json_response(StatusCode::OK, v.to_json()))
    })
    .await
}

async fn set_status(app: Arc<App>, headers: HeaderMap, id: String, status: KeyStatus) -> ApiResult {
    admin_op(app, &headers, Need::Write, move |kg, token, at| {
        let v = kg.show_key(&id, at)?;
        reach(token, &v.organization)?;
        let (v, changed) = kg.set_status(&id, status, at)?;
        let mut j = v.to_json();
        j["changed"] = json!(changed);
        Ok(json_response(StatusCode::OK, j))
    })
    .await
}

async fn disable_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    set_status(app, headers, id, KeyStatus::Disabled).await
}

async fn enable_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    set_status(app, headers, id, KeyStatus::Active).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    grace_seconds: Option<u64>,
    /// Absent: the old key's expiry policy; `null`: never; a number: days.
    #[serde(default, deserialize_with = "present")]
    expiry_days: Option<Option<u16>>,
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

async fn rotate_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let req: Rotate = if bytes.is_empty() {
        Rotate::default()
    } else {
        body(&headers, &bytes)?
    };
    admin_op(app, &headers, Need::Write, move |kg, token, at| {
        let v = kg.show_key(&id, at)?;
        reach(token, &v.organization)?;
        let expiry = req
            .expiry_days
            .map(|d| d.map_or(ExpiryPolicy::Never, ExpiryPolicy::Days));
        let (created, old) = kg.rotate_key(&id, req.grace_seconds.unwrap_or(86_400), expiry, at)?;
        let mut j = created.view.to_json();
        j["key"] = json!(created.issued.expose_key());
        j["rotated"] = old.to_json();
        Ok(json_response(StatusCode::CREATED, j))
    })
    .await
}

async fn delete_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    admin_op(app, &headers, Need::Write, move |kg, token, at| {
        let v = kg.show_key(&id, at)?;
        reach(token, &v.organization)?;
        kg.delete_key(&id, at)?;
        Ok(json_response(
            StatusCode::OK,
            json!({"deleted_key": id, "organization": v.organization}),
        ))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    org: Option<String>,
}

async fn audit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> ApiResult {
    admin_op(app, &headers, Need::Read, move |kg, token, _| {
        let org = match (&q.org, &token.organization) {
            (None, None) => None,
            _ => Some(organization_of(token, q.org)?),
        };
        let events = kg.audit(org.as_deref())?;
        Ok(json_response(
            StatusCode::OK,
            json!(events.iter().map(audit_json).collect::<Vec<_>>()),
        ))
    })
    .await
}

async fn issuer(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    admin_op(app, &headers, Need::Read, |kg, _, _| {
        let i = kg.issuer();
        Ok(json_response(
            StatusCode::OK,
            json!({"issuer_key_id": i.id(), "algorithm": "ed25519",
                   "public_key": crate::issuer::hex(&i.public_key())}),
        ))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotQuery {
    since: Option<u64>,
}

/// `GET /v1/snapshot[?since=SEQ]`: the signed snapshot (or delta) as bytes,
/// `ETag` from the sequence; `If-None-Match` with it answers 304. Needs a
/// deployment-wide token (a snapshot holds every organization's keys).
async fn snapshot(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<SnapshotQuery>,
) -> ApiResult {
    let metrics_app = app.clone();
    let delta_app = app.clone();
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let answer = admin_op(app, &headers, Need::Read, move |kg, token, at| {
        if !token.reaches(None) {
            return Err(ApiError::forbidden(
                "a snapshot holds every organization: it needs a deployment-wide token",
            ));
        }
        let sequence = kg.sequence()?;
        if q.since.is_some_and(|base| base > sequence) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!("since is past the store's sequence {sequence}"),
            ));
        }
        let etag = match q.since {
            Some(base) => format!("\"{sequence}-since-{base}\""),
            None => format!("\"{sequence}\""),
        };
        let matched = if_none_match
            .as_deref()
            .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        // 304 for a conditional request that matches; 204 for a delta asked
        // from the current sequence (nothing changed since).
        let empty = if matched {
            Some(StatusCode::NOT_MODIFIED)
        } else if q.since == Some(sequence) {
            Some(StatusCode::NO_CONTENT)
        } else {
            None
        };
        if let Some(status) = empty {
            return Ok(Response::builder()
                .status(status)
                .header(header::ETAG, &etag)
                .header("keygate-sequence", sequence.to_string())
                .body(Body::empty())
                .unwrap_or_default());
        }
        // A delta from this service's own recent commits when it saw every
        // commit since the base (it is the store's only writer while it
        // runs); else from the whole store.
        let recent = match q.since {
            Some(base) => kg.recent_delta(base, at)?,
            None => None,
        };
        if q.since.is_some() {
            let source = if recent.is_some() { "recent" } else { "store" };
            delta_app
                .metrics
                .deltas
                .get_or_create(&SourceLabels {
                    source: source.to_string(),
                })
                .inc();
        }
        let file = match recent {
            Some(file) => file,
            None => kg.snapshot(at, q.since)?,
        };
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::ETAG, &etag)
            .header("keygate-sequence", file.info.sequence.to_string())
            .body(Body::from(file.bytes))
            .unwrap_or_default())
    })
    .await;
    let status = match &answer {
        Ok(r) => r.status(),
        Err(e) => e.status,
    };
    metrics_app
        .metrics
        .snapshots
        .get_or_create(&StatusLabels {
            status: status.as_u16().to_string(),
        })
        .inc();
    answer
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, json!({"status": "ok"}))
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    json_response(
        StatusCode::OK,
        json!({"status": "ready", "sequence": app.pool.sequence.load(Ordering::Acquire),
               "validators": app.pool.slots.len()}),
    )
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &app.metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such route")
}

/// Every error answer in the documented shape: answers made by the HTTP
/// stack itself (405, 408, 413, a query that does not parse) come as plain
/// text or empty; they are replaced by `{"error": {"code", "message"}}`
/// (never quoting the request).
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let code = format!("http-{}", status.as_u16());
    let message = status.canonical_reason().unwrap_or("error").to_lowercase();
    let mut r = ApiError::new(status, &code, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = response.headers().get(&name) {
            r.headers_mut().insert(name, v.clone());
        }
    }
    r
}

/// One log line per request: method, route template (never the raw path
/// or query), status, time. Headers and bodies are never logged.
async fn access_log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    tracing::info!(
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

fn router(app: Arc<App>, cfg: &Config) -> Router {
    Router::new()
        .route("/v1/keys/verify", post(verify))
        .route("/v1/orgs", get(list_orgs).post(create_org))
        .route("/v1/orgs/{slug}", get(show_org).delete(delete_org))
        .route("/v1/orgs/{slug}/policy", post(set_policy))
        .route("/v1/projects", get(list_projects).post(create_project))
        .route(
            "/v1/projects/{id}",
            get(show_project).delete(delete_project),
        )
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{id}", get(show_key).delete(delete_key))
        .route("/v1/keys/{id}/disable", post(disable_key))
        .route("/v1/keys/{id}/enable", post(enable_key))
        .route("/v1/keys/{id}/rotate", post(rotate_key))
        .route("/v1/audit", get(audit))
        .route("/v1/issuer", get(issuer))
        .route("/v1/snapshot", get(snapshot))
        .route(
            "/v1/session",
            get(page::session_info)
                .post(page::sign_in)
                .delete(page::sign_out),
        )
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/app.css", get(page::style))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), limit_failures))
        .layer(DefaultBodyLimit::max(cfg.body_limit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            cfg.request_timeout,
        ))
        // Outermost: every answer, 408s included, is JSON and logged.
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(access_log))
        .with_state(app)
}

/// The address a client on this machine reaches the service at: loopback
/// for an address on all interfaces, else the address itself.
pub fn reachable_here(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(
            if ip.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            },
            addr.port(),
        ),
        _ => addr,
    }
}

/// Serve until SIGTERM or SIGINT. `ready` is called with the bound address
/// once connections are accepted. The store (and its lock) is released when
/// this returns.
pub fn run(
    mut kg: Keygate,
    mut cfg: Config,
    ready: impl FnOnce(SocketAddr, Option<admin::IssuedToken>),
) -> Result<(), Error> {
    // Every connection is a file descriptor: a limit below the connection
    // limit would let idle clients starve the store of descriptors (a
    // commit whose sync then fails). Raise the soft limit to the hard one,
    // and keep connections 64 below it.
    let files = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let budget = usize::try_from(files.saturating_sub(64))
        .unwrap_or(usize::MAX)
        .max(1);
    if cfg.max_connections > budget {
        tracing::warn!(
            asked = cfg.max_connections,
            allowed = budget,
            open_files = files,
            "the connection limit is lowered to fit the open-files limit"
        );
        cfg.max_connections = budget;
    }
    let pool = Pool::new(&mut kg, cfg.validators)?;
    let metrics = Metrics::new();
    metrics
        .sequence
        .set(i64::try_from(pool.sequence.load(Ordering::Acquire)).unwrap_or(i64::MAX));
    let app = Arc::new(App {
        admin: Mutex::new(kg),
        pool,
        metrics,
        failures: Failures {
            seen: Mutex::new(std::collections::HashMap::new()),
        },
        stopping: std::sync::atomic::AtomicBool::new(false),
        uses: Mutex::new(std::collections::HashMap::new()),
        creations: Mutex::new(Vec::new()),
        sessions: session::Sessions::default(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::System(format!("cannot start the service's runtime: {e}")))?;
    runtime.block_on(serve(app, cfg, ready))
}

async fn serve(
    app: Arc<App>,
    cfg: Config,
    ready: impl FnOnce(SocketAddr, Option<admin::IssuedToken>),
) -> Result<(), Error> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| Error::System(format!("cannot listen on {}: {e}", cfg.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::System(format!("cannot read the listening address: {e}")))?;
    let router = router(app.clone(), &cfg);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(cfg.max_connections));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    // Local commands are pointed at the service through loopback (an
    // address on all interfaces is reachable there too; a specific other
    // address is not announced).
    let announced = match local.ip() {
        ip if ip.is_loopback() || ip.is_unspecified() => Some(reachable_here(local)),
        _ => None,
    };
    if let Some(a) = announced {
        lock(&app.admin).announce_server(&format!("http://{a}"))?;
    }
    tracing::info!(address = %local, validators = app.pool.slots.len(), "listening");
    // The first run: listening works, so a token made now is one somebody
    // sees (a bind failure would have left one nobody saw).
    let first = if cfg.first_run_token {
        let mut kg = lock(&app.admin);
        let (tokens, untrusted) = kg.list_admin_tokens()?;
        if tokens.is_empty() && untrusted.is_empty() {
            let at = admin::now()?;
            let t = kg.create_admin_token("first run (sign-in link)", None, false, at)?;
            tracing::info!(token = %t.info.id, "made the first admin token");
            Some(t)
        } else {
            None
        }
    } else {
        None
    };
    ready(local, first);
    // Key uses reach the store every 10 s, in one write.
    let flusher = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                tick.tick().await;
                let app = app.clone();
                let _ = tokio::task::spawn_blocking(move || app.flush_uses()).await;
            }
        })
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    app.metrics.refused_connections.inc();
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(cfg.header_timeout)
                    .max_buf_size(64 * 1024);
                let router = router.clone();
                // Every request knows its client's address (for the
                // failed-authentication limit).
                let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Peer(peer.ip()));
                    ARRIVED.scope(Instant::now(), router.clone().oneshot(req.map(Body::new)))
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = watched.await;
                    drop(permit);
                });
            }
            () = &mut shutdown => break,
        }
    }
    app.stopping.store(true, Ordering::Release);
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(cfg.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time");
    }
    flusher.abort();
    let last = app.clone();
    let _ = tokio::task::spawn_blocking(move || last.flush_uses()).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
