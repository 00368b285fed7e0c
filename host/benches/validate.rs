//! Validation cost: through the component (as the host runs it) beside the
//! same decision made natively by `keygate-policy` (the baseline, never the
//! production path), and whole `keygate verify` processes with a warm and a
//! cold compilation cache.
//!
//! Run: `cargo bench -p keygate --bench validate`. Figures are in the README.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey};
use keygate::Runtime;
use keygate::admin::{Access, KeySpec, Keygate, Location};
use keygate::runtime::bindings as b;
use keygate_policy as p;

const NOW: u64 = 1_800_000_000;

struct Fixture {
    key: String,
    signed: b::SignedRecord,
    registration: b::SignedRecord,
    organization: b::SignedRecord,
    /// A snapshot file holding the record, the registration and the
    /// organization.
    snapshot: Vec<u8>,
    trusted: b::IssuerKey,
}

fn fixture(rt: &Runtime) -> Fixture {
    let mut m = rt.instantiate().unwrap();
    let sk = SigningKey::from_bytes(&[42; 32]);
    let pk = sk.verifying_key().to_bytes();
    let id = m.issuer_key_id(&pk).unwrap().unwrap();
    let issued = m.make_key("kg", &[9; 40]).unwrap().unwrap();
    let record = m
        .check_create(&b::CreateRequest {
            id: issued.id.clone(),
            organization: "acme".into(),
            name: "bench".into(),
            level: b::KeyLevel::Organization,
            scopes: vec![b::Scope::TriggerWorkflows],
            access: b::ProjectAccess::Selected(vec![
                "prj_a".into(),
                "prj_b".into(),
                "prj_c".into(),
            ]),
            expiry: b::ExpiryPolicy::Days(30),
            now: NOW,
            key_hash: issued.key_hash.clone(),
            rotated_from: None,
        })
        .unwrap()
        .unwrap();
    let reg = m
        .register_project("prj_b", "acme", "bench", NOW - 60)
        .unwrap()
        .unwrap();
    let org = m
        .register_organization("acme", "Acme", NOW - 120)
        .unwrap()
        .unwrap();
    let mut sign = |body: b::SignedBody| {
        let canonical = m.encode(&body).unwrap().unwrap();
        let signature = sk.sign(&canonical).to_bytes().to_vec();
        b::SignedRecord {
            canonical,
            signature,
            issuer_key_id: id.clone(),
        }
    };
    let signed = sign(b::SignedBody::Key(record.clone()));
    let registration = sign(b::SignedBody::Project(reg.clone()));
    let organization = sign(b::SignedBody::Organization(org.clone()));
    let mut snapshot = m
        .encode_snapshot(&b::Snapshot {
            issuer_key_id: id.clone(),
            sequence: 3,
            base: None,
            made_at: NOW,
            organizations: vec![org],
            keys: vec![record],
            projects: vec![reg],
            tombstones: vec![],
        })
        .unwrap()
        .unwrap();
    let snapshot_sig = sk.sign(&snapshot).to_bytes();
    snapshot.extend_from_slice(&snapshot_sig);
    Fixture {
        key: issued.expose_key().to_string(),
        signed,
        registration,
        organization,
        snapshot,
        trusted: b::IssuerKey {
            id,
            public_key: pk.to_vec(),
        },
    }
}

fn native_signed(s: &b::SignedRecord) -> p::SignedRecord {
    p::SignedRecord {
        canonical: s.canonical.clone(),
        signature: s.signature.clone(),
        issuer_key_id: s.issuer_key_id.clone(),
    }
}

fn native_types(f: &Fixture) -> (p::Request, p::Evidence, p::IssuerKey) {
    (
        p::Request {
            presented_key: f.key.clone(),
            project: "prj_b".into(),
            action: p::Scope::TriggerWorkflows,
            now: NOW + 60,
        },
        p::Evidence {
            key: Some(native_signed(&f.signed)),
            tombstone: None,
            project: Some(native_signed(&f.registration)),
            organization: Some(native_signed(&f.organization)),
        },
        p::IssuerKey {
            id: f.trusted.id.clone(),
            public_key: f.trusted.public_key.clone(),
        },
    )
}

fn request(f: &Fixture) -> b::ValidationRequest {
    b::ValidationRequest {
        presented_key: f.key.clone(),
        project: "prj_b".into(),
        action: b::Scope::TriggerWorkflows,
        now: NOW + 60,
    }
}

fn decisions(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let f = fixture(&rt);
    let mut m = rt.instantiate().unwrap();
    let req = request(&f);
    let trusted = vec![f.trusted.clone()];
    let evidence = b::Evidence {
        key: Some(f.signed.clone()),
        tombstone: None,
        project: Some(f.registration.clone()),
        organization: Some(f.organization.clone()),
    };
    assert!(matches!(
        m.evaluate(&req, &evidence, &trusted).unwrap(),
        b::Decision::Allow(_)
    ));
    let (nreq, nevidence, nissuer) = native_types(&f);
    let ntrusted = p::TrustedIssuers::new(std::slice::from_ref(&nissuer));
    assert!(matches!(
        p::evaluate(&nreq, &nevidence, &ntrusted),
        p::Decision::Allow(_)
    ));

    let mut g = c.benchmark_group("evaluate (two signature checks)");
    g.bench_function("component", |bch| {
        bch.iter(|| {
            m.evaluate(black_box(&req), black_box(&evidence), &trusted)
                .unwrap()
        })
    });
    g.bench_function("native", |bch| {
        bch.iter(|| p::evaluate(black_box(&nreq), black_box(&nevidence), &ntrusted))
    });
    g.finish();

    let v = m.validator(&trusted).unwrap();
    m.validator_load(v, &f.signed).unwrap().unwrap();
    m.validator_load(v, &f.registration).unwrap().unwrap();
    m.validator_load(v, &f.organization).unwrap().unwrap();
    assert!(matches!(
        m.validator_check(v, &req).unwrap(),
        b::Decision::Allow(_)
    ));
    let nissuer_for_snapshot = nissuer.clone();
    let mut nv = p::Validator::new(&[nissuer]);
    for s in [&nevidence.key, &nevidence.project, &nevidence.organization]
        .into_iter()
        .flatten()
    {
        nv.load(s).unwrap();
    }
    let mut g = c.benchmark_group("validator.check (hot path)");
    g.bench_function("component", |bch| {
        bch.iter(|| m.validator_check(v, black_box(&req)).unwrap())
    });
    g.bench_function("native", |bch| bch.iter(|| nv.check(black_box(&nreq))));
    g.finish();

    // The hot path of a validator fed by a snapshot: two strings in, one out.
    let sv = m.validator(&trusted).unwrap();
    m.validator_load_snapshot(sv, &f.snapshot).unwrap().unwrap();
    let mut nsv = p::Validator::new(std::slice::from_ref(&nissuer_for_snapshot));
    nsv.load_snapshot(&f.snapshot).unwrap();
    let now = NOW + 60;
    assert!(matches!(
        m.validator_authorize(sv, &f.key, "prj_b", b::Scope::TriggerWorkflows, now)
            .unwrap(),
        b::Authorization::Allow(_)
    ));
    assert!(
        nsv.authorize(&f.key, "prj_b", p::Scope::TriggerWorkflows, now)
            .is_ok()
    );
    let mut g = c.benchmark_group("validator.authorize (snapshot hot path)");
    g.bench_function("component", |bch| {
        bch.iter(|| {
            m.validator_authorize(
                sv,
                black_box(&f.key),
                black_box("prj_b"),
                b::Scope::TriggerWorkflows,
                now,
            )
            .unwrap()
        })
    });
    g.bench_function("native", |bch| {
        bch.iter(|| {
            nsv.authorize(
                black_box(&f.key),
                black_box("prj_b"),
                p::Scope::TriggerWorkflows,
                now,
            )
        })
    });
    g.finish();

    // The same call refused at its first step (no hash, no lookup): what
    // the boundary costs (two strings lowered, a resource borrowed, an enum
    // lifted).
    let mut g = c.benchmark_group("validator.authorize, malformed key (the call alone)");
    g.bench_function("component", |bch| {
        bch.iter(|| {
            m.validator_authorize(
                sv,
                black_box("kg_short"),
                black_box("prj_b"),
                b::Scope::TriggerWorkflows,
                now,
            )
            .unwrap()
        })
    });
    g.bench_function("native", |bch| {
        bch.iter(|| {
            nsv.authorize(
                black_box("kg_short"),
                black_box("prj_b"),
                p::Scope::TriggerWorkflows,
                now,
            )
        })
    });
    g.finish();

    // What a call costs without hashing or signatures: a string in, a string out.
    let mut g = c.benchmark_group("parse-key (call overhead)");
    g.bench_function("component", |bch| {
        bch.iter(|| m.parse_key(black_box(&f.key)).unwrap())
    });
    g.bench_function("native", |bch| {
        bch.iter(|| p::parse_key(black_box(&f.key)).map(str::to_string))
    });
    g.finish();

    let mut g = c.benchmark_group("instantiate");
    g.bench_function("component instance from InstancePre", |bch| {
        bch.iter(|| rt.instantiate().unwrap())
    });
    g.finish();
}

/// A data directory with one project and one key, made through the library.
fn store(dir: &Path) -> (String, String) {
    let mut kg = Keygate::open(&Location::new(dir), true).unwrap();
    kg.create_organization("acme", None, keygate::admin::now().unwrap())
        .unwrap();
    let project = kg
        .create_project("acme", "bench", keygate::admin::now().unwrap())
        .unwrap();
    let created = kg
        .create_key(
            KeySpec {
                organization: Some("acme".into()),
                name: "bench".into(),
                access: Access::AllProjects,
                expiry: b::ExpiryPolicy::Never,
                scopes: vec!["trigger-workflows".into()],
            },
            keygate::admin::now().unwrap(),
        )
        .unwrap();
    (created.issued.expose_key().to_string(), project.id)
}

fn verify_process(bin: &str, dir: &Path, key: &str, project: &str) {
    let mut child = Command::new(bin)
        .args(["--data-dir"])
        .arg(dir)
        .args(["verify", "--project", project])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn processes(c: &mut Criterion) {
    let bin = env!("CARGO_BIN_EXE_keygate");
    let tmp = tempfile::tempdir().unwrap();
    let (key, project) = store(tmp.path());
    let cache = tmp.path().join(keygate::datadir::CACHE_DIR);
    let mut g = c.benchmark_group("keygate verify process");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    verify_process(bin, tmp.path(), &key, &project);
    g.bench_function("warm cache", |bch| {
        bch.iter(|| verify_process(bin, tmp.path(), &key, &project))
    });
    g.bench_function("cold cache", |bch| {
        bch.iter(|| {
            let _ = std::fs::remove_dir_all(&cache);
            verify_process(bin, tmp.path(), &key, &project)
        })
    });
    g.finish();
}

criterion_group!(benches, decisions, processes);
criterion_main!(benches);
