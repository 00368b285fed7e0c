//! keygate's hot path beside Cedar's `is_authorized`, for the same five
//! decisions, in one criterion run:
//!
//! - `keygate-component`: `validator.authorize` through wasmtime, from a
//!   loaded snapshot (what the host, `keygate serve` and gateways run);
//! - `keygate-native`: the same decision by `keygate-policy` compiled natively
//!   (the baseline, not a production path);
//! - `cedar-prebuilt`: `Authorizer::is_authorized` with every entity built
//!   once, the request (principal, action, resource, context) built per call;
//! - `cedar-authenticated`: the same, after what a gateway must do first to
//!   turn a presented key into a principal (SHA-256 of the key, lookup by
//!   hash), so that it does the work keygate's figure includes;
//! - `cedar-per-request`: the key's, the project's and the organization's
//!   entities built from their records on every call, then `is_authorized`.
//!
//! Cedar's policies (`cedar/keygate.cedar`) are validated against its schema
//! (`cedar/keygate.cedarschema`) in strict mode before anything is timed,
//! and every path's decision is checked against the expected one for every
//! case, so a model that drifted from keygate's rules stops the run.
//!
//! Run: `cargo bench -p keygate-compare` (about two minutes). After
//! criterion's own lines it prints a table of medians with the ratios the
//! README quotes.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use criterion::Criterion;
use ed25519_dalek::{Signer, SigningKey};
use keygate::Runtime;
use keygate::runtime::{ValidatorHandle, bindings as b};
use keygate_policy as p;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const NOW: u64 = 1_800_000_000;
const DAY: u64 = 86_400;
const SCHEMA: &str = include_str!("../cedar/keygate.cedarschema");
const POLICIES: &str = include_str!("../cedar/keygate.cedar");

/// The five decisions, as the issue names them.
#[derive(Clone, Copy)]
enum Case {
    AllProjects,
    TenSelected,
    OtherOrganization,
    Expired,
    UnknownKey,
}

const CASES: [Case; 5] = [
    Case::AllProjects,
    Case::TenSelected,
    Case::OtherOrganization,
    Case::Expired,
    Case::UnknownKey,
];

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::AllProjects => "allow-all-projects",
            Case::TenSelected => "allow-10-selected",
            Case::OtherOrganization => "deny-other-organization",
            Case::Expired => "deny-expired",
            Case::UnknownKey => "deny-unknown-key",
        }
    }

    /// keygate's expected answer (Cedar's is Allow exactly when this is).
    fn expected(self) -> Result<(), p::DenyReason> {
        match self {
            Case::AllProjects | Case::TenSelected => Ok(()),
            Case::OtherOrganization => Err(p::DenyReason::WrongOrganization),
            Case::Expired => Err(p::DenyReason::Expired),
            Case::UnknownKey => Err(p::DenyReason::UnknownKey),
        }
    }
}

/// One key of the fixture: its secret (for keygate), its record (for
/// Cedar's entities) and the project it asks for.
struct Presented {
    key: String,
    record: Option<p::KeyRecord>,
    project: String,
}

struct Fixture {
    presented: Vec<Presented>,
    organizations: Vec<p::Organization>,
    projects: Vec<p::ProjectRegistration>,
    snapshot: Vec<u8>,
    trusted: p::IssuerKey,
}

fn key(seed: u8) -> p::IssuedKey {
    p::make_key("kg", &[seed; 40]).unwrap()
}

fn create(
    k: &p::IssuedKey,
    org: &str,
    access: p::ProjectAccess,
    expiry: p::ExpiryPolicy,
    now: u64,
) -> p::KeyRecord {
    p::check_create(p::CreateRequest {
        id: k.id.clone(),
        organization: org.into(),
        name: "bench".into(),
        level: p::KeyLevel::Organization,
        scopes: vec![p::Scope::TriggerWorkflows],
        access,
        expiry,
        now,
        key_hash: k.key_hash.to_vec(),
        rotated_from: None,
    })
    .unwrap()
}

fn project_id(org: &str, i: usize) -> String {
    format!("prj_{org}{i:07}")
}

/// Two organizations (acme with 12 projects and a 90-day key policy,
/// globex with one project, no policy) and the five cases' keys, in one
/// signed snapshot.
fn fixture() -> Fixture {
    let sk = SigningKey::from_bytes(&[42; 32]);
    let pk = sk.verifying_key().to_bytes();
    let issuer = p::issuer_key_id(&pk).unwrap();
    let acme = p::register_organization("acme", "Acme", NOW - 90 * DAY)
        .unwrap()
        .amend(
            p::KeyPolicy {
                expiry: p::ExpiryRule::AtMost(90),
            },
            None,
        )
        .unwrap();
    let globex = p::register_organization("globex", "Globex", NOW - 90 * DAY).unwrap();
    let mut projects: Vec<p::ProjectRegistration> = (0..12)
        .map(|i| p::register_project(&project_id("acme", i), "acme", "p", NOW - 80 * DAY).unwrap())
        .collect();
    projects.push(
        p::register_project(&project_id("globex", 0), "globex", "p", NOW - 80 * DAY).unwrap(),
    );

    let selected: Vec<String> = (2..12).map(|i| project_id("acme", i)).collect();
    let (k_all, k_sel, k_globex, k_old, k_unknown) = (key(1), key(2), key(3), key(4), key(5));
    let r_all = create(
        &k_all,
        "acme",
        p::ProjectAccess::AllProjects,
        p::ExpiryPolicy::Days(90),
        NOW - DAY,
    );
    let r_sel = create(
        &k_sel,
        "acme",
        p::ProjectAccess::Selected(selected.clone()),
        p::ExpiryPolicy::Days(30),
        NOW - DAY,
    );
    let r_globex = create(
        &k_globex,
        "globex",
        p::ProjectAccess::AllProjects,
        p::ExpiryPolicy::Never,
        NOW - DAY,
    );
    let r_old = create(
        &k_old,
        "acme",
        p::ProjectAccess::AllProjects,
        p::ExpiryPolicy::Days(7),
        NOW - 30 * DAY,
    );
    let presented = vec![
        Presented {
            key: k_all.key.clone(),
            record: Some(r_all.clone()),
            project: project_id("acme", 0),
        },
        Presented {
            key: k_sel.key.clone(),
            record: Some(r_sel.clone()),
            // The last of the ten: a set scanned in order finds it last.
            project: selected[9].clone(),
        },
        Presented {
            key: k_globex.key.clone(),
            record: Some(r_globex.clone()),
            project: project_id("acme", 0),
        },
        Presented {
            key: k_old.key.clone(),
            record: Some(r_old.clone()),
            project: project_id("acme", 0),
        },
        Presented {
            key: k_unknown.key.clone(),
            record: None,
            project: project_id("acme", 0),
        },
    ];
    let mut keys = vec![r_all, r_sel, r_globex, r_old];
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    projects.sort_by(|a, b| a.id.cmp(&b.id));
    let organizations = vec![acme, globex];
    let mut snapshot = p::Snapshot {
        issuer_key_id: issuer.clone(),
        sequence: 1,
        base: None,
        made_at: NOW,
        organizations: organizations.clone(),
        keys,
        projects: projects.clone(),
        tombstones: Vec::new(),
    }
    .encode()
    .unwrap();
    let signature = sk.sign(&snapshot).to_bytes();
    snapshot.extend_from_slice(&signature);
    Fixture {
        presented,
        organizations,
        projects,
        snapshot,
        trusted: p::IssuerKey {
            id: issuer,
            public_key: pk.to_vec(),
        },
    }
}

// ---------------------------------------------------------------------------
// Cedar's side: the same facts as entities.

fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(ty).unwrap(),
        EntityId::from_str(id).unwrap(),
    )
}

fn long(v: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(v).unwrap())
}

fn org_entity(o: &p::Organization) -> Entity {
    let mut attrs = HashMap::from([
        (
            "deleted".to_string(),
            RestrictedExpression::new_bool(o.is_deleted()),
        ),
        ("created_at".to_string(), long(o.created_at)),
        (
            "requires_expiry".to_string(),
            RestrictedExpression::new_bool(!matches!(o.key_policy.expiry, p::ExpiryRule::Optional)),
        ),
    ]);
    if let p::ExpiryRule::AtMost(days) = o.key_policy.expiry {
        attrs.insert("max_lifetime".into(), long(u64::from(days) * DAY));
    }
    Entity::new(uid("Keygate::Organization", &o.slug), attrs, HashSet::new()).unwrap()
}

fn project_entity(r: &p::ProjectRegistration) -> Entity {
    let org = uid("Keygate::Organization", &r.organization);
    let attrs = HashMap::from([
        (
            "organization".to_string(),
            RestrictedExpression::new_entity_uid(org.clone()),
        ),
        (
            "deleted".to_string(),
            RestrictedExpression::new_bool(r.is_deleted()),
        ),
        ("created_at".to_string(), long(r.created_at)),
    ]);
    Entity::new(uid("Keygate::Project", &r.id), attrs, HashSet::from([org])).unwrap()
}

fn key_entity(r: &p::KeyRecord) -> Entity {
    let org = uid("Keygate::Organization", &r.organization);
    let (all, projects) = match (&r.level, &r.access) {
        (p::KeyLevel::Project(project), _) => (false, vec![project.clone()]),
        (p::KeyLevel::Organization, p::ProjectAccess::AllProjects) => (true, Vec::new()),
        (p::KeyLevel::Organization, p::ProjectAccess::Selected(ids)) => (false, ids.clone()),
    };
    let mut attrs = HashMap::from([
        (
            "organization".to_string(),
            RestrictedExpression::new_entity_uid(org.clone()),
        ),
        (
            "disabled".to_string(),
            RestrictedExpression::new_bool(r.status == p::KeyStatus::Disabled),
        ),
        ("created_at".to_string(), long(r.created_at)),
        (
            "scopes".to_string(),
            RestrictedExpression::new_set(
                r.scopes
                    .iter()
                    .map(|s| RestrictedExpression::new_string(s.as_str().to_string())),
            ),
        ),
        (
            "all_projects".to_string(),
            RestrictedExpression::new_bool(all),
        ),
        (
            "projects".to_string(),
            RestrictedExpression::new_set(
                projects
                    .iter()
                    .map(|id| RestrictedExpression::new_entity_uid(uid("Keygate::Project", id))),
            ),
        ),
    ]);
    if let Some(at) = r.expires_at {
        attrs.insert("expires_at".into(), long(at));
    }
    Entity::new(uid("Keygate::ApiKey", &r.id), attrs, HashSet::from([org])).unwrap()
}

struct Cedar {
    policies: PolicySet,
    entities: Entities,
    authorizer: Authorizer,
    action: EntityUid,
    /// SHA-256 of each known key → its principal, for `cedar-authenticated`.
    by_hash: HashMap<[u8; 32], EntityUid>,
}

impl Cedar {
    fn new(f: &Fixture) -> Self {
        let (schema, warnings) = Schema::from_cedarschema_str(SCHEMA).unwrap();
        assert_eq!(warnings.count(), 0, "schema warnings");
        let policies = PolicySet::from_str(POLICIES).unwrap();
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        assert!(
            validation.validation_passed(),
            "Cedar policies fail validation: {:?}",
            validation.validation_errors().collect::<Vec<_>>()
        );
        let entities = Entities::from_entities(
            f.organizations
                .iter()
                .map(org_entity)
                .chain(f.projects.iter().map(project_entity))
                .chain(
                    f.presented
                        .iter()
                        .filter_map(|k| k.record.as_ref().map(key_entity)),
                ),
            Some(&schema),
        )
        .unwrap();
        let by_hash = f
            .presented
            .iter()
            .filter_map(|k| {
                let r = k.record.as_ref()?;
                Some((
                    <[u8; 32]>::try_from(r.key_hash.as_slice()).unwrap(),
                    uid("Keygate::ApiKey", &r.id),
                ))
            })
            .collect();
        Cedar {
            policies,
            entities,
            authorizer: Authorizer::new(),
            action: uid("Keygate::Action", "trigger-workflows"),
            by_hash,
        }
    }

    fn request(&self, principal: EntityUid, project: &str) -> Request {
        let context = Context::from_pairs([("now".to_string(), long(NOW))]).unwrap();
        Request::new(
            principal,
            self.action.clone(),
            uid("Keygate::Project", project),
            context,
            None,
        )
        .unwrap()
    }

    /// Entities prebuilt; the principal is the key's id, as a gateway that
    /// already knows which key this is would pass it (the unknown key's id
    /// names no entity).
    fn prebuilt(&self, principal_id: &str, project: &str) -> Decision {
        let req = self.request(uid("Keygate::ApiKey", principal_id), project);
        self.authorizer
            .is_authorized(&req, &self.policies, &self.entities)
            .decision()
    }

    /// Hash the presented key and find its principal first, as keygate
    /// does before its rules; an unknown key never reaches Cedar.
    fn authenticated(&self, presented: &str, project: &str) -> Decision {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let Some((stored, principal)) = self.by_hash.get_key_value(&hash) else {
            return Decision::Deny;
        };
        if !bool::from(stored.ct_eq(&hash)) {
            return Decision::Deny;
        }
        let req = self.request(principal.clone(), project);
        self.authorizer
            .is_authorized(&req, &self.policies, &self.entities)
            .decision()
    }

    /// The records a gateway fetched for this request, turned into
    /// entities on every call.
    fn per_request(
        &self,
        record: Option<&p::KeyRecord>,
        principal_id: &str,
        project: &p::ProjectRegistration,
        org: &p::Organization,
    ) -> Decision {
        let mut list = vec![project_entity(project), org_entity(org)];
        if let Some(r) = record {
            list.push(key_entity(r));
        }
        let entities = Entities::from_entities(list, None).unwrap();
        let req = self.request(uid("Keygate::ApiKey", principal_id), &project.id);
        self.authorizer
            .is_authorized(&req, &self.policies, &entities)
            .decision()
    }
}

// ---------------------------------------------------------------------------

const PATHS: [&str; 5] = [
    "keygate-component",
    "keygate-native",
    "cedar-prebuilt",
    "cedar-authenticated",
    "cedar-per-request",
];

fn criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("criterion-compare")
}

fn main() {
    let f = fixture();
    let cedar = Cedar::new(&f);
    let mut native = p::Validator::new(std::slice::from_ref(&f.trusted));
    native.load_snapshot(&f.snapshot).unwrap();
    // KEYGATE_PERF_MAP=1 writes /tmp/perf-PID.map, so that `perf report`
    // names the guest's functions (how the README's profile was taken).
    let mut config = wasmtime::Config::default();
    if std::env::var_os("KEYGATE_PERF_MAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let rt = Runtime::with_config(&config).unwrap();
    let mut m = rt.instantiate().unwrap();
    let v: ValidatorHandle = m
        .validator(&[b::IssuerKey {
            id: f.trusted.id.clone(),
            public_key: f.trusted.public_key.clone(),
        }])
        .unwrap();
    m.validator_load_snapshot(v, &f.snapshot).unwrap().unwrap();

    // Every path agrees with the expected decision before anything is timed.
    for (case, k) in CASES.iter().zip(&f.presented) {
        let want = case.expected();
        let got = native
            .authorize(&k.key, &k.project, p::Scope::TriggerWorkflows, NOW)
            .map(|_| ());
        assert_eq!(got, want, "native, {}", case.name());
        let got = m
            .validator_authorize(v, &k.key, &k.project, b::Scope::TriggerWorkflows, NOW)
            .unwrap();
        match (&got, want) {
            (b::Authorization::Allow(_), Ok(())) => {}
            (b::Authorization::Deny(r), Err(w)) => {
                assert_eq!(
                    format!("{r:?}"),
                    format!("DenyReason::{w:?}"),
                    "component, {}",
                    case.name()
                )
            }
            _ => panic!("component, {}: {got:?}", case.name()),
        }
        let allow = if want.is_ok() {
            Decision::Allow
        } else {
            Decision::Deny
        };
        let id = p::parse_key(&k.key).unwrap();
        let (project, org) = project_and_org(&f, k);
        assert_eq!(cedar.prebuilt(id, &k.project), allow, "{}", case.name());
        assert_eq!(
            cedar.authenticated(&k.key, &k.project),
            allow,
            "{}",
            case.name()
        );
        assert_eq!(
            cedar.per_request(k.record.as_ref(), id, project, org),
            allow,
            "{}",
            case.name()
        );
    }

    let started = SystemTime::now();
    let mut c = Criterion::default()
        .configure_from_args()
        .output_directory(&criterion_dir())
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (case, k) in CASES.iter().zip(&f.presented) {
        let id = p::parse_key(&k.key).unwrap();
        let (project, org) = project_and_org(&f, k);
        let mut g = c.benchmark_group(case.name());
        g.bench_function(PATHS[0], |bn| {
            bn.iter(|| {
                black_box(
                    m.validator_authorize(
                        v,
                        black_box(&k.key),
                        black_box(&k.project),
                        b::Scope::TriggerWorkflows,
                        NOW,
                    )
                    .unwrap(),
                )
            })
        });
        g.bench_function(PATHS[1], |bn| {
            bn.iter(|| {
                black_box(
                    native
                        .authorize(
                            black_box(&k.key),
                            black_box(&k.project),
                            p::Scope::TriggerWorkflows,
                            NOW,
                        )
                        .is_ok(),
                )
            })
        });
        g.bench_function(PATHS[2], |bn| {
            bn.iter(|| black_box(cedar.prebuilt(black_box(id), black_box(&k.project))))
        });
        g.bench_function(PATHS[3], |bn| {
            bn.iter(|| black_box(cedar.authenticated(black_box(&k.key), black_box(&k.project))))
        });
        g.bench_function(PATHS[4], |bn| {
            bn.iter(|| {
                black_box(cedar.per_request(
                    black_box(k.record.as_ref()),
                    black_box(id),
                    project,
                    org,
                ))
            })
        });
        g.finish();
    }
    c.final_summary();
    report(started);
}

fn project_and_org<'f>(
    f: &'f Fixture,
    k: &Presented,
) -> (&'f p::ProjectRegistration, &'f p::Organization) {
    let project = f.projects.iter().find(|r| r.id == k.project).unwrap();
    let org = f
        .organizations
        .iter()
        .find(|o| o.slug == project.organization)
        .unwrap();
    (project, org)
}

/// The median of one benchmark from criterion's saved estimates, in µs;
/// none when it did not run in this process (a filter left it out, and its
/// file is from an earlier run).
fn median_us(case: &str, path: &str, since: SystemTime) -> Option<f64> {
    let file = criterion_dir()
        .join(case)
        .join(path)
        .join("new/estimates.json");
    if std::fs::metadata(&file).ok()?.modified().ok()? < since {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    Some(v["median"]["point_estimate"].as_f64()? / 1000.0)
}

/// The table the README quotes: medians of this run, and each path's time
/// over keygate's component hot path.
fn report(since: SystemTime) {
    println!();
    println!(
        "medians in µs (load average {}); in brackets: that path's time / keygate-component's",
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    );
    println!("| decision | {} |", PATHS.join(" | "));
    println!("|---|{}", "---:|".repeat(PATHS.len()));
    for case in CASES {
        let Some(base) = median_us(case.name(), PATHS[0], since) else {
            println!("| {} | (not run) |", case.name());
            continue;
        };
        let cells: Vec<String> = PATHS
            .iter()
            .map(|path| match median_us(case.name(), path, since) {
                Some(t) if *path == PATHS[0] => format!("{t:.3}"),
                Some(t) => format!("{t:.3} ({:.2}×)", t / base),
                None => "–".into(),
            })
            .collect();
        println!("| {} | {} |", case.name(), cells.join(" | "));
    }
}
