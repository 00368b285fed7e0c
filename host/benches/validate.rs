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
use keygate::admin::{Access, KeySpec, Keygate};
use keygate::runtime::bindings as b;
use keygate_policy as p;

const NOW: u64 = 1_800_000_000;

struct Fixture {
    key: String,
    signed: b::SignedRecord,
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
    let canonical = m.encode_record(&record).unwrap().unwrap();
    let signature = sk.sign(&canonical).to_bytes().to_vec();
    Fixture {
        key: issued.expose_key().to_string(),
        signed: b::SignedRecord {
            canonical,
            signature,
            issuer_key_id: id.clone(),
        },
        trusted: b::IssuerKey {
            id,
            public_key: pk.to_vec(),
        },
    }
}

fn native_types(f: &Fixture) -> (p::Request, p::SignedRecord, p::IssuerKey) {
    (
        p::Request {
            presented_key: f.key.clone(),
            organization: "acme".into(),
            project: "prj_b".into(),
            action: p::Scope::TriggerWorkflows,
            now: NOW + 60,
        },
        p::SignedRecord {
            canonical: f.signed.canonical.clone(),
            signature: f.signed.signature.clone(),
            issuer_key_id: f.signed.issuer_key_id.clone(),
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
        organization: "acme".into(),
        project: "prj_b".into(),
        action: b::Scope::TriggerWorkflows,
        now: NOW + 60,
    }
}

fn decisions(c: &mut Criterion) {
    let rt = Runtime::new(None).unwrap();
    let f = fixture(&rt);
    let mut m = rt.instantiate().unwrap();
    let req = request(&f);
    let trusted = vec![f.trusted.clone()];
    assert!(matches!(
        m.evaluate(&req, Some(&f.signed), &trusted).unwrap(),
        b::Decision::Allow(_)
    ));
    let (nreq, nsigned, nissuer) = native_types(&f);
    let ntrusted = p::TrustedIssuers::new(std::slice::from_ref(&nissuer));
    assert!(matches!(
        p::evaluate(&nreq, Some(&nsigned), &ntrusted),
        p::Decision::Allow(_)
    ));

    let mut g = c.benchmark_group("evaluate (signature check)");
    g.bench_function("component", |bch| {
        bch.iter(|| {
            m.evaluate(black_box(&req), Some(black_box(&f.signed)), &trusted)
                .unwrap()
        })
    });
    g.bench_function("native", |bch| {
        bch.iter(|| p::evaluate(black_box(&nreq), Some(black_box(&nsigned)), &ntrusted))
    });
    g.finish();

    let v = m.validator(&trusted).unwrap();
    m.validator_load(v, &f.signed).unwrap().unwrap();
    let mut nv = p::Validator::new(&[nissuer]);
    nv.load(&nsigned).unwrap();
    let mut g = c.benchmark_group("validator.check (hot path)");
    g.bench_function("component", |bch| {
        bch.iter(|| m.validator_check(v, black_box(&req)).unwrap())
    });
    g.bench_function("native", |bch| bch.iter(|| nv.check(black_box(&nreq))));
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
    let mut kg = Keygate::open(dir, true).unwrap();
    let project = kg
        .create_project("acme", "bench", keygate::admin::now())
        .unwrap();
    let created = kg
        .create_key(
            KeySpec {
                organization: Some("acme".into()),
                name: "bench".into(),
                access: Access::AllProjects,
                expiry: b::ExpiryPolicy::Never,
                scopes: vec![b::Scope::TriggerWorkflows],
            },
            keygate::admin::now(),
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
    let cache = tmp.path().join(keygate::store::CACHE_DIR);
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
