//! Decision tests, property tests and the shared test vectors.
//!
//! These run natively and inside wasmtime (wasm32-wasip2). The vectors file is
//! compiled in with `include_str!`, so the in-guest run reads the very same
//! bytes without a filesystem.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::format;

use crate::*;

/// Start of every fixture: 2027-01-15T08:00:00Z.
const T0: u64 = 1_800_000_000;
const DAY: u64 = record::DAY;

/// The committed vectors (regenerate with `KEYGATE_WRITE_VECTORS=1 cargo test -p keygate-policy vectors`).
const VECTORS: &str = include_str!("../../tests/vectors/policy-v1.json");
const VECTORS_PATH: &str = "tests/vectors/policy-v1.json";

fn issuer(seed: u8) -> (SigningKey, IssuerKey) {
    let sk = SigningKey::from_bytes(&core::array::from_fn(|i| seed.wrapping_add(i as u8)));
    let pk = sk.verifying_key().to_bytes().to_vec();
    let id = issuer_key_id(&pk).unwrap();
    (sk, IssuerKey { id, public_key: pk })
}

fn sign(sk: &SigningKey, rec: &KeyRecord) -> SignedRecord {
    let canonical = rec.encode().unwrap();
    let signature = sk.sign(&canonical).to_bytes().to_vec();
    let pk = sk.verifying_key().to_bytes();
    SignedRecord {
        canonical,
        signature,
        issuer_key_id: issuer_key_id(&pk).unwrap(),
    }
}

fn random(seed: u8) -> [u8; key::RANDOM_BYTES] {
    core::array::from_fn(|i| {
        (i as u8)
            .wrapping_mul(151)
            .wrapping_add(seed.wrapping_mul(17))
    })
}

struct Made {
    key: String,
    record: KeyRecord,
}

fn create(
    seed: u8,
    org: &str,
    level: KeyLevel,
    access: ProjectAccess,
    expiry: ExpiryPolicy,
) -> Made {
    let k = make_key("kg", &random(seed)).unwrap();
    let record = check_create(CreateRequest {
        id: k.id.clone(),
        organization: org.to_string(),
        name: format!("fixture {seed}"),
        level,
        scopes: vec![Scope::TriggerWorkflows],
        access,
        expiry,
        now: T0,
        key_hash: k.key_hash.to_vec(),
        rotated_from: None,
    })
    .unwrap();
    Made { key: k.key, record }
}

fn req(key: &str, org: &str, project: &str, now: u64) -> Request {
    Request {
        presented_key: key.to_string(),
        organization: org.to_string(),
        project: project.to_string(),
        action: Scope::TriggerWorkflows,
        now,
    }
}

fn selected(ids: &[&str]) -> ProjectAccess {
    ProjectAccess::Selected(ids.iter().map(|s| s.to_string()).collect())
}

// ---------------------------------------------------------------- vectors

struct Fixture {
    issuer: (SigningKey, IssuerKey),
    keys: Vec<(&'static str, [u8; key::RANDOM_BYTES], String)>,
    records: Vec<(&'static str, KeyRecord, SignedRecord)>,
    cases: Vec<(&'static str, Request, Option<&'static str>, Decision)>,
}

/// Every vector, built from fixed seeds. Ed25519 signatures are
/// deterministic, so the result is the same on every run and platform.
fn fixture() -> Fixture {
    let (sk, ik) = issuer(1);
    let (other_sk, _) = issuer(200);
    let org_all = create(
        10,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Days(30),
    );
    let org_sel = create(
        11,
        "acme",
        KeyLevel::Organization,
        selected(&["prj_beta", "prj_alpha"]),
        ExpiryPolicy::Never,
    );
    let proj = create(
        12,
        "acme",
        KeyLevel::Project("prj_alpha".into()),
        ProjectAccess::AllProjects,
        ExpiryPolicy::Days(7),
    );
    let mut dis = create(
        13,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    dis.record.status = KeyStatus::Disabled;
    dis.record.version = 2;
    let tampered = create(
        14,
        "acme",
        KeyLevel::Organization,
        selected(&["prj_alpha"]),
        ExpiryPolicy::Never,
    );
    let foreign = create(
        15,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let globex = create(
        16,
        "globex",
        KeyLevel::Project("prj_alpha".into()),
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );

    // The tampered record: signed with one project, then widened to all.
    let mut tampered_signed = sign(&sk, &tampered.record);
    let mut widened = tampered.record.clone();
    widened.access = ProjectAccess::AllProjects;
    tampered_signed.canonical = widened.encode().unwrap();

    let records = vec![
        (
            "org-all-30d",
            org_all.record.clone(),
            sign(&sk, &org_all.record),
        ),
        (
            "org-selected",
            org_sel.record.clone(),
            sign(&sk, &org_sel.record),
        ),
        (
            "project-alpha-7d",
            proj.record.clone(),
            sign(&sk, &proj.record),
        ),
        ("org-disabled", dis.record.clone(), sign(&sk, &dis.record)),
        ("org-tampered", widened.clone(), tampered_signed),
        (
            "org-foreign-issuer",
            foreign.record.clone(),
            sign(&other_sk, &foreign.record),
        ),
        (
            "globex-project",
            globex.record.clone(),
            sign(&sk, &globex.record),
        ),
    ];

    // A key with org_all's id but another secret.
    let mut wrong_random = random(10);
    wrong_random[key::ID_BYTES..].copy_from_slice(&[0x42; 32]);
    let wrong_secret = make_key("kg", &wrong_random).unwrap().key;
    let mut typo = org_all.key.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let unknown = make_key("kg", &random(99)).unwrap().key;

    let allow = |m: &Made| {
        Decision::Allow(Allowed {
            key_id: m.record.id.clone(),
            name: m.record.name.clone(),
            organization: m.record.organization.clone(),
            level: m.record.level.clone(),
            record_version: m.record.version,
            expires_at: m.record.expires_at,
        })
    };
    let deny = Decision::Deny;
    use DenyReason as D;
    let cases = vec![
        (
            "org key, all projects, allowed on a project",
            req(&org_all.key, "acme", "prj_alpha", T0 + 1),
            Some("org-all-30d"),
            allow(&org_all),
        ),
        (
            "org key, all projects, allowed on a project created later",
            req(&org_all.key, "acme", "prj_new", T0 + DAY),
            Some("org-all-30d"),
            allow(&org_all),
        ),
        (
            "org key, last second before expiry",
            req(&org_all.key, "acme", "prj_alpha", T0 + 30 * DAY - 1),
            Some("org-all-30d"),
            allow(&org_all),
        ),
        (
            "org key, expired at expires-at exactly",
            req(&org_all.key, "acme", "prj_alpha", T0 + 30 * DAY),
            Some("org-all-30d"),
            deny(D::Expired),
        ),
        (
            "org key on another organization's project",
            req(&org_all.key, "globex", "prj_alpha", T0 + 1),
            Some("org-all-30d"),
            deny(D::WrongOrganization),
        ),
        (
            "empty string",
            req("", "acme", "prj_alpha", T0),
            Some("org-all-30d"),
            deny(D::Malformed),
        ),
        (
            "not a key",
            req("Bearer hunter2", "acme", "prj_alpha", T0),
            None,
            deny(D::Malformed),
        ),
        (
            "typo in last character",
            req(&typo, "acme", "prj_alpha", T0),
            Some("org-all-30d"),
            deny(D::BadChecksum),
        ),
        (
            "well-formed key, no record",
            req(&unknown, "acme", "prj_alpha", T0),
            None,
            deny(D::UnknownKey),
        ),
        (
            "right id, wrong secret",
            req(&wrong_secret, "acme", "prj_alpha", T0),
            Some("org-all-30d"),
            deny(D::SecretMismatch),
        ),
        (
            "record widened after signing",
            req(&tampered.key, "acme", "prj_beta", T0),
            Some("org-tampered"),
            deny(D::RecordSignatureInvalid),
        ),
        (
            "record signed by an untrusted issuer",
            req(&foreign.key, "acme", "prj_alpha", T0),
            Some("org-foreign-issuer"),
            deny(D::RecordSignatureInvalid),
        ),
        (
            "disabled key",
            req(&dis.key, "acme", "prj_alpha", T0),
            Some("org-disabled"),
            deny(D::Disabled),
        ),
        (
            "selected key on a selected project",
            req(&org_sel.key, "acme", "prj_beta", T0 + 400 * DAY),
            Some("org-selected"),
            allow(&org_sel),
        ),
        (
            "selected key on another project",
            req(&org_sel.key, "acme", "prj_gamma", T0),
            Some("org-selected"),
            deny(D::ProjectNotGranted),
        ),
        (
            "project key on its project",
            req(&proj.key, "acme", "prj_alpha", T0),
            Some("project-alpha-7d"),
            allow(&proj),
        ),
        (
            "project key on a sibling project",
            req(&proj.key, "acme", "prj_beta", T0),
            Some("project-alpha-7d"),
            deny(D::ProjectNotGranted),
        ),
        (
            "project key after 7 days",
            req(&proj.key, "acme", "prj_alpha", T0 + 7 * DAY),
            Some("project-alpha-7d"),
            deny(D::Expired),
        ),
        (
            "same project id in another organization",
            req(&globex.key, "acme", "prj_alpha", T0),
            Some("globex-project"),
            deny(D::WrongOrganization),
        ),
        (
            "key presented for another key's record",
            req(&proj.key, "acme", "prj_alpha", T0),
            Some("org-all-30d"),
            deny(D::UnknownKey),
        ),
    ];
    let keys = vec![
        ("org-all-30d", random(10), org_all.key),
        ("org-selected", random(11), org_sel.key),
        ("project-alpha-7d", random(12), proj.key),
        ("org-disabled", random(13), dis.key),
        ("org-tampered", random(14), tampered.key),
        ("org-foreign-issuer", random(15), foreign.key),
        ("globex-project", random(16), globex.key),
    ];
    Fixture {
        issuer: (sk, ik),
        keys,
        records,
        cases,
    }
}

fn record_json(r: &KeyRecord) -> Value {
    json!({
        "id": r.id,
        "organization": r.organization,
        "name": r.name,
        "level": match &r.level { KeyLevel::Organization => json!("organization"), KeyLevel::Project(p) => json!({"project": p}) },
        "scopes": r.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "access": match &r.access { ProjectAccess::AllProjects => json!("all-projects"), ProjectAccess::Selected(v) => json!({"selected": v}) },
        "created_at": r.created_at,
        "expiry": match r.expiry { ExpiryPolicy::Never => json!("never"), ExpiryPolicy::Days(d) => json!({"days": d}) },
        "expires_at": r.expires_at,
        "status": match r.status { KeyStatus::Active => "active", KeyStatus::Disabled => "disabled" },
        "key_hash": hex::encode(r.key_hash),
        "version": r.version,
        "rotated_from": r.rotated_from,
        "rotated_to": r.rotated_to,
    })
}

fn decision_json(d: &Decision) -> Value {
    match d {
        Decision::Allow(a) => {
            json!({"allow": {"key_id": a.key_id, "record_version": a.record_version, "expires_at": a.expires_at}})
        }
        Decision::Deny(r) => json!({"deny": r.as_str()}),
    }
}

fn vectors_json(f: &Fixture) -> String {
    let v = json!({
        "about": "keygate policy test vectors, format 1. Generated by keygate-policy's tests from fixed seeds; every implementation of the policy must reproduce them.",
        "issuer": {
            "seed": hex::encode(f.issuer.0.to_bytes()),
            "public_key": hex::encode(&f.issuer.1.public_key),
            "key_id": f.issuer.1.id,
        },
        "keys": f.keys.iter().map(|(name, random, key)| json!({
            "name": name, "prefix": "kg", "random": hex::encode(random), "key": key,
            "id": parse_key(key).unwrap(), "sha256": hex::encode(hash_key(key)),
        })).collect::<Vec<_>>(),
        "records": f.records.iter().map(|(name, rec, signed)| json!({
            "name": name, "fields": record_json(rec),
            "canonical": hex::encode(&signed.canonical),
            "signature": hex::encode(&signed.signature),
            "issuer_key_id": signed.issuer_key_id,
        })).collect::<Vec<_>>(),
        "cases": f.cases.iter().map(|(name, r, rec, d)| json!({
            "name": name,
            "request": {"presented_key": r.presented_key, "organization": r.organization, "project": r.project, "action": r.action.as_str(), "now": r.now},
            "record": rec,
            "expect": decision_json(d),
        })).collect::<Vec<_>>(),
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap();
    s.push('\n');
    s
}

#[cfg(not(target_family = "wasm"))]
#[test]
fn vectors_file_is_current() {
    let fresh = vectors_json(&fixture());
    if std::env::var_os("KEYGATE_WRITE_VECTORS").is_some() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(VECTORS_PATH);
        std::fs::write(path, &fresh).unwrap();
        return;
    }
    assert!(
        fresh == VECTORS,
        "{VECTORS_PATH} is out of date: the key format, the record encoding or a decision changed. \
         If that is intended, regenerate with KEYGATE_WRITE_VECTORS=1 cargo test -p keygate-policy vectors"
    );
}

/// Reads the committed file (not the in-memory fixture) and checks every
/// entry with the crate's own functions: this is what another runtime does.
#[test]
fn committed_vectors_hold() {
    let v: Value = serde_json::from_str(VECTORS).unwrap();
    let unhex = |v: &Value| hex::decode(v.as_str().unwrap()).unwrap();
    let issuer = IssuerKey {
        id: v["issuer"]["key_id"].as_str().unwrap().to_string(),
        public_key: unhex(&v["issuer"]["public_key"]),
    };
    assert_eq!(check_issuer_key(&issuer), Ok(()));
    let trusted = TrustedIssuers::new(&[issuer.clone()]);

    for k in v["keys"].as_array().unwrap() {
        let made = make_key(k["prefix"].as_str().unwrap(), &unhex(&k["random"])).unwrap();
        assert_eq!(made.key, k["key"].as_str().unwrap());
        assert_eq!(made.id, k["id"].as_str().unwrap());
        assert_eq!(hex::encode(made.key_hash), k["sha256"].as_str().unwrap());
    }

    let mut records = std::collections::BTreeMap::new();
    let mut validator = Validator::new(&[issuer]);
    for r in v["records"].as_array().unwrap() {
        let signed = SignedRecord {
            canonical: unhex(&r["canonical"]),
            signature: unhex(&r["signature"]),
            issuer_key_id: r["issuer_key_id"].as_str().unwrap().to_string(),
        };
        let decoded = KeyRecord::decode(&signed.canonical).unwrap();
        assert_eq!(record_json(&decoded), r["fields"], "{}", r["name"]);
        assert_eq!(decoded.encode().unwrap(), signed.canonical);
        let verified = trusted.verify(&signed);
        assert_eq!(validator.load(&signed).is_ok(), verified);
        records.insert(r["name"].as_str().unwrap().to_string(), signed);
    }
    assert_eq!(
        validator.len(),
        5,
        "the tampered and foreign-issuer records must not load"
    );

    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for c in cases {
        let q = &c["request"];
        let request = Request {
            presented_key: q["presented_key"].as_str().unwrap().to_string(),
            organization: q["organization"].as_str().unwrap().to_string(),
            project: q["project"].as_str().unwrap().to_string(),
            action: Scope::from_name(q["action"].as_str().unwrap()).unwrap(),
            now: q["now"].as_u64().unwrap(),
        };
        let record = c["record"].as_str().map(|n| &records[n]);
        let got = evaluate(&request, record, &trusted);
        assert_eq!(decision_json(&got), c["expect"], "evaluate: {}", c["name"]);
        // The validator holds every verified record; it must agree wherever the
        // case's record is the key's own, verified record.
        let own = record.is_some_and(|s| {
            trusted.verify(s)
                && parse_key(&request.presented_key).ok()
                    == KeyRecord::decode(&s.canonical)
                        .ok()
                        .map(|r| r.id)
                        .as_deref()
        });
        if own {
            assert_eq!(
                decision_json(&validator.check(&request)),
                c["expect"],
                "validator: {}",
                c["name"]
            );
        }
    }
    // Every deny reason the single scope allows is covered.
    for reason in DenyReason::ALL {
        if reason == DenyReason::ScopeNotGranted {
            continue; // unreachable while trigger-workflows is the only scope
        }
        assert!(
            cases.iter().any(|c| c["expect"]["deny"] == reason.as_str()),
            "no vector for {}",
            reason.as_str()
        );
    }
}

// ---------------------------------------------------------------- decisions

#[test]
fn untrusted_or_invalid_issuer_keys_are_ignored() {
    let (_, good) = issuer(1);
    let mut wrong_id = good.clone();
    wrong_id.id = "0000000000000000".into();
    assert_eq!(check_issuer_key(&wrong_id), Err(IssuerError::IdMismatch));
    let short = IssuerKey {
        id: good.id.clone(),
        public_key: vec![1; 31],
    };
    assert_eq!(check_issuer_key(&short), Err(IssuerError::BadPublicKey));
    // The identity point is a weak key.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(issuer_key_id(&identity), Err(IssuerError::BadPublicKey));
    assert_eq!(TrustedIssuers::new(&[wrong_id, short, good]).len(), 1);
}

#[test]
fn validator_never_goes_back_to_an_older_version_or_a_forgotten_id() {
    let (sk, ik) = issuer(1);
    let m = create(
        20,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let mut v = Validator::new(&[ik]);
    let v1 = sign(&sk, &m.record);
    let mut disabled = m.record.clone();
    disabled.status = KeyStatus::Disabled;
    disabled.version = 2;
    let v2 = sign(&sk, &disabled);
    assert_eq!(v.load(&v1), Ok(LoadOutcome::Added));
    assert!(matches!(
        v.check(&req(&m.key, "acme", "p1", T0)),
        Decision::Allow(_)
    ));
    assert_eq!(v.load(&v2), Ok(LoadOutcome::Replaced));
    assert_eq!(v.load(&v1), Ok(LoadOutcome::Stale));
    assert_eq!(v.load(&v2), Ok(LoadOutcome::Stale));
    assert_eq!(
        v.check(&req(&m.key, "acme", "p1", T0)),
        Decision::Deny(DenyReason::Disabled)
    );
    assert!(v.forget(&m.record.id));
    assert_eq!(
        v.check(&req(&m.key, "acme", "p1", T0)),
        Decision::Deny(DenyReason::UnknownKey)
    );
    assert_eq!(v.load(&v2), Err(LoadError::Forgotten));
    assert!(!v.forget(&m.record.id));
    assert!(v.is_empty());
}

#[test]
fn validator_refuses_records_it_cannot_verify() {
    let (sk, ik) = issuer(1);
    let (other, _) = issuer(2);
    let m = create(
        21,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let mut v = Validator::new(&[ik]);
    assert_eq!(
        v.load(&sign(&other, &m.record)),
        Err(LoadError::SignatureInvalid)
    );
    let mut garbage = sign(&sk, &m.record);
    garbage.canonical = b"KGR\x01 not a record".to_vec();
    garbage.signature = sk.sign(&garbage.canonical).to_bytes().to_vec();
    assert_eq!(v.load(&garbage), Err(LoadError::NotCanonical));
    let mut short_sig = sign(&sk, &m.record);
    short_sig.signature.pop();
    assert_eq!(v.load(&short_sig), Err(LoadError::SignatureInvalid));
    assert!(v.is_empty());
}

#[test]
fn creation_rules_are_enforced_in_order() {
    let k = make_key("kg", &random(30)).unwrap();
    let base = CreateRequest {
        id: k.id.clone(),
        organization: "acme".into(),
        name: "  crm sync  ".into(),
        level: KeyLevel::Organization,
        scopes: vec![Scope::TriggerWorkflows, Scope::TriggerWorkflows],
        access: selected(&["p2", "p1", "p2"]),
        expiry: ExpiryPolicy::Days(90),
        now: T0,
        key_hash: k.key_hash.to_vec(),
        rotated_from: None,
    };
    let ok = check_create(base.clone()).unwrap();
    assert_eq!(ok.name, "crm sync");
    assert_eq!(ok.scopes, vec![Scope::TriggerWorkflows]);
    assert_eq!(ok.access, selected(&["p1", "p2"]));
    assert_eq!(ok.expires_at, Some(T0 + 90 * DAY));
    assert_eq!(ok.version, 1);

    let with = |f: &dyn Fn(&mut CreateRequest)| {
        let mut r = base.clone();
        f(&mut r);
        check_create(r)
    };
    use RecordError as E;
    assert_eq!(with(&|r| r.id = "short".into()), Err(E::BadKeyId));
    for org in ["", "Acme", "-acme", "acme-", "ac me", &"a".repeat(64)] {
        assert_eq!(
            with(&|r| r.organization = org.into()),
            Err(E::BadOrganization),
            "{org:?}"
        );
    }
    assert_eq!(with(&|r| r.name = "   ".into()), Err(E::NameEmpty));
    assert_eq!(
        with(&|r| r.name = "a\u{7}b".into()),
        Err(E::NameControlCharacter)
    );
    assert_eq!(
        with(&|r| r.name = "a\nb".into()),
        Err(E::NameControlCharacter)
    );
    assert_eq!(with(&|r| r.name = "é".repeat(101)), Err(E::NameTooLong));
    assert!(with(&|r| r.name = "é".repeat(100)).is_ok());
    assert_eq!(with(&|r| r.scopes.clear()), Err(E::NoScope));
    assert_eq!(
        with(&|r| r.access = selected(&[])),
        Err(E::EmptyProjectSelection)
    );
    assert_eq!(
        with(&|r| r.access = selected(&["ok", "not ok"])),
        Err(E::BadProjectId("not ok".into()))
    );
    for d in [0u16, 1, 6, 91, 365, u16::MAX] {
        assert_eq!(
            with(&|r| r.expiry = ExpiryPolicy::Days(d)),
            Err(E::ExpiryOutOfRange(d))
        );
    }
    assert!(with(&|r| r.expiry = ExpiryPolicy::Days(7)).is_ok());
    assert_eq!(
        with(&|r| r.expiry = ExpiryPolicy::Never)
            .unwrap()
            .expires_at,
        None
    );
    assert_eq!(
        with(&|r| r.key_hash.pop().map(|_| ()).unwrap_or(())),
        Err(E::BadKeyHash)
    );
    assert_eq!(
        with(&|r| {
            r.now = u64::MAX;
        }),
        Err(E::InconsistentExpiry)
    );
    assert_eq!(
        with(&|r| r.rotated_from = Some("x".into())),
        Err(E::BadKeyId)
    );

    // Project-level keys act on exactly their own project.
    let proj = |access: ProjectAccess| {
        with(&|r| {
            r.level = KeyLevel::Project("p1".into());
            r.access = access.clone();
        })
    };
    assert_eq!(
        proj(ProjectAccess::AllProjects).unwrap().access,
        selected(&["p1"])
    );
    assert_eq!(
        proj(selected(&["p1", "p1"])).unwrap().access,
        selected(&["p1"])
    );
    assert_eq!(proj(selected(&["p2"])), Err(E::ProjectLevelAccess));
    assert_eq!(proj(selected(&["p1", "p2"])), Err(E::ProjectLevelAccess));
    assert_eq!(
        with(&|r| r.level = KeyLevel::Project("bad id".into())),
        Err(E::BadProjectId("bad id".into()))
    );
}

#[test]
fn encode_refuses_records_that_break_rules() {
    let m = create(
        31,
        "acme",
        KeyLevel::Organization,
        selected(&["a", "b"]),
        ExpiryPolicy::Days(10),
    );
    let mut r = m.record.clone();
    r.access = selected(&["b", "a"]);
    assert_eq!(r.encode(), Err(RecordError::NotCanonical));
    let mut r = m.record.clone();
    r.expires_at = Some(T0 + 11 * DAY);
    assert_eq!(r.encode(), Err(RecordError::InconsistentExpiry));
    r.expires_at = None;
    assert_eq!(r.encode(), Err(RecordError::InconsistentExpiry));
    let mut r = m.record.clone();
    r.version = 0;
    assert_eq!(r.encode(), Err(RecordError::BadVersion));
    let mut r = m.record.clone();
    r.name = " padded".into();
    assert_eq!(r.encode(), Err(RecordError::NotCanonical));
    let mut r = m.record;
    r.level = KeyLevel::Project("a".into());
    assert_eq!(r.encode(), Err(RecordError::ProjectLevelAccess));
}

#[test]
fn canonical_bytes_start_with_magic_and_version() {
    let m = create(
        32,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let bytes = m.record.encode().unwrap();
    assert_eq!(&bytes[..4], b"KGR\x01");
    let mut v2 = bytes.clone();
    v2[3] = 2;
    assert_eq!(KeyRecord::decode(&v2), Err(RecordError::NotCanonical));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(KeyRecord::decode(&trailing), Err(RecordError::NotCanonical));
    for cut in 0..bytes.len() {
        assert!(KeyRecord::decode(&bytes[..cut]).is_err());
    }
    // The secret never appears in the record, only its hash.
    assert!(!bytes.windows(43).any(|w| w == &m.key.as_bytes()[14..57]));
}

// ---------------------------------------------------------------- properties

fn arb_org() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
}

fn arb_project() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,12}"
}

fn arb_record() -> impl Strategy<Value = KeyRecord> {
    (
        proptest::array::uniform8(any::<u8>()),
        arb_org(),
        "[ -~]{0,20}[!-~]",
        proptest::option::of(arb_project()),
        proptest::option::of(proptest::collection::btree_set(arb_project(), 1..6)),
        (
            any::<u32>(),
            proptest::option::of(7u16..=90),
            0u64..1000,
            any::<bool>(),
        ),
        (1u64..1000, proptest::array::uniform32(any::<u8>())),
        (
            proptest::option::of(proptest::array::uniform8(any::<u8>())),
            proptest::option::of(proptest::array::uniform8(any::<u8>())),
        ),
    )
        .prop_map(
            |(
                id,
                org,
                name,
                project,
                sel,
                (created, days, early, disabled),
                (version, hash),
                (from, to),
            )| {
                let key_id = |b: [u8; 8]| {
                    let mut r = [0u8; key::RANDOM_BYTES];
                    r[..8].copy_from_slice(&b);
                    make_key("kg", &r).unwrap().id
                };
                let created = u64::from(created);
                let (level, access) = match project {
                    Some(p) => (
                        KeyLevel::Project(p.clone()),
                        ProjectAccess::Selected(vec![p]),
                    ),
                    None => (
                        KeyLevel::Organization,
                        sel.map_or(ProjectAccess::AllProjects, |s| {
                            ProjectAccess::Selected(s.into_iter().collect())
                        }),
                    ),
                };
                let (expiry, expires_at) = match days {
                    None => (ExpiryPolicy::Never, None),
                    Some(d) => (
                        ExpiryPolicy::Days(d),
                        Some(created + u64::from(d) * DAY - early),
                    ),
                };
                KeyRecord {
                    id: key_id(id),
                    organization: org,
                    name: name.trim().to_string(),
                    level,
                    scopes: vec![Scope::TriggerWorkflows],
                    access,
                    created_at: created,
                    expiry,
                    expires_at,
                    status: if disabled {
                        KeyStatus::Disabled
                    } else {
                        KeyStatus::Active
                    },
                    key_hash: hash,
                    version,
                    rotated_from: from.map(key_id),
                    rotated_to: to.map(key_id),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn encoding_is_deterministic_and_round_trips(rec in arb_record()) {
        let a = rec.encode().unwrap();
        let b = rec.clone().encode().unwrap();
        prop_assert_eq!(&a, &b);
        let back = KeyRecord::decode(&a).unwrap();
        prop_assert_eq!(&back, &rec);
        prop_assert_eq!(back.encode().unwrap(), a);
    }

    #[test]
    fn decode_accepts_only_canonical_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(r) = KeyRecord::decode(&bytes) {
            prop_assert_eq!(r.encode().unwrap(), bytes);
        }
    }

    #[test]
    fn any_flipped_bit_of_record_or_signature_is_rejected(seed in any::<u8>(), pos in any::<usize>(), bit in 0u8..8) {
        let (sk, ik) = issuer(1);
        let m = create(seed, "acme", KeyLevel::Organization, ProjectAccess::AllProjects, ExpiryPolicy::Never);
        let good = sign(&sk, &m.record);
        let trusted = TrustedIssuers::new(&[ik.clone()]);
        let request = req(&m.key, "acme", "prj", T0);
        prop_assert!(matches!(evaluate(&request, Some(&good), &trusted), Decision::Allow(_)));
        let total = good.canonical.len() + good.signature.len();
        let pos = pos % total;
        let mut bad = good.clone();
        if pos < bad.canonical.len() {
            bad.canonical[pos] ^= 1 << bit;
        } else {
            bad.signature[pos - good.canonical.len()] ^= 1 << bit;
        }
        let d = evaluate(&request, Some(&bad), &trusted);
        prop_assert!(!matches!(d, Decision::Allow(_)), "flip at {} allowed", pos);
        prop_assert!(Validator::new(&[ik]).load(&bad).is_err());
    }

    #[test]
    fn a_selected_projects_key_never_allows_outside_its_set(
        set in proptest::collection::btree_set(arb_project(), 1..8),
        asked in arb_project(),
        seed in any::<u8>(),
    ) {
        let ids: Vec<String> = set.iter().cloned().collect();
        let m = create(seed, "acme", KeyLevel::Organization, ProjectAccess::Selected(ids), ExpiryPolicy::Never);
        let (sk, ik) = issuer(1);
        let trusted = TrustedIssuers::new(&[ik]);
        let d = evaluate(&req(&m.key, "acme", &asked, T0), Some(&sign(&sk, &m.record)), &trusted);
        if set.contains(&asked) {
            prop_assert!(matches!(d, Decision::Allow(_)));
        } else {
            prop_assert_eq!(d, Decision::Deny(DenyReason::ProjectNotGranted));
        }
    }

    #[test]
    fn no_key_ever_allows_another_organization(
        own in arb_org(), other in arb_org(), project in arb_project(),
        kind in 0u8..3, seed in any::<u8>(), now in T0..T0 + 100 * DAY,
    ) {
        prop_assume!(own != other);
        let (level, access) = match kind {
            0 => (KeyLevel::Organization, ProjectAccess::AllProjects),
            1 => (KeyLevel::Organization, ProjectAccess::Selected(vec![project.clone()])),
            _ => (KeyLevel::Project(project.clone()), ProjectAccess::AllProjects),
        };
        let m = create(seed, &own, level, access, ExpiryPolicy::Never);
        let (sk, ik) = issuer(1);
        let signed = sign(&sk, &m.record);
        let d = evaluate(&req(&m.key, &other, &project, now), Some(&signed), &TrustedIssuers::new(&[ik.clone()]));
        prop_assert_eq!(d, Decision::Deny(DenyReason::WrongOrganization));
        let mut v = Validator::new(&[ik]);
        v.load(&signed).unwrap();
        prop_assert_eq!(v.check(&req(&m.key, &other, &project, now)), Decision::Deny(DenyReason::WrongOrganization));
    }

    #[test]
    fn an_expired_key_never_allows(days in 7u16..=90, after in 0u64..10_000 * DAY, seed in any::<u8>(), project in arb_project()) {
        let m = create(seed, "acme", KeyLevel::Organization, ProjectAccess::AllProjects, ExpiryPolicy::Days(days));
        let (sk, ik) = issuer(1);
        let signed = sign(&sk, &m.record);
        let now = T0 + u64::from(days) * DAY + after;
        let request = req(&m.key, "acme", &project, now);
        prop_assert_eq!(evaluate(&request, Some(&signed), &TrustedIssuers::new(&[ik.clone()])), Decision::Deny(DenyReason::Expired));
        let mut v = Validator::new(&[ik]);
        v.load(&signed).unwrap();
        prop_assert_eq!(v.check(&request), Decision::Deny(DenyReason::Expired));
    }

    #[test]
    fn a_project_level_key_allows_only_its_project(own in arb_project(), asked in arb_project(), seed in any::<u8>()) {
        let m = create(seed, "acme", KeyLevel::Project(own.clone()), ProjectAccess::AllProjects, ExpiryPolicy::Never);
        let (sk, ik) = issuer(1);
        let d = evaluate(&req(&m.key, "acme", &asked, T0), Some(&sign(&sk, &m.record)), &TrustedIssuers::new(&[ik]));
        prop_assert_eq!(matches!(d, Decision::Allow(_)), own == asked);
    }

    #[test]
    fn any_presented_string_gets_a_decision(s in "\\PC{0,100}|kg_[0-9A-Za-z]{55,65}") {
        let (_, ik) = issuer(1);
        let v = Validator::new(&[ik.clone()]);
        let d = v.check(&req(&s, "acme", "p", T0));
        prop_assert!(matches!(d, Decision::Deny(_)));
        let d2 = evaluate(&req(&s, "acme", "p", T0), None, &TrustedIssuers::new(&[ik]));
        prop_assert!(matches!(d2, Decision::Deny(_)));
    }
}

// ---------------------------------------------------------------- changes

#[test]
fn status_changes_and_retirement_make_new_versions() {
    let m = create(
        40,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Days(30),
    );
    let r = &m.record;
    assert_eq!(r.status_at(T0), EffectiveStatus::Active);
    assert_eq!(r.status_at(T0 + 30 * DAY), EffectiveStatus::Expired);
    let off = r.with_status(KeyStatus::Disabled).unwrap();
    assert_eq!(off.version, 2);
    assert_eq!(off.status_at(T0), EffectiveStatus::Disabled);
    assert_eq!(off.status_at(T0 + 31 * DAY), EffectiveStatus::Disabled);
    let on = off.with_status(KeyStatus::Active).unwrap();
    assert_eq!((on.version, on.status), (3, KeyStatus::Active));

    let succ = make_key("kg", &random(41)).unwrap().id;
    let old = r.retire(&succ, T0 + DAY, 3600).unwrap();
    assert_eq!(old.expires_at, Some(T0 + DAY + 3600));
    assert_eq!(old.rotated_to.as_deref(), Some(succ.as_str()));
    assert_eq!(old.version, 2);
    assert!(old.encode().is_ok());
    // Grace never extends an earlier expiry.
    assert_eq!(
        r.retire(&succ, T0 + 30 * DAY - 10, 7 * DAY)
            .unwrap()
            .expires_at,
        Some(T0 + 30 * DAY)
    );
    assert_eq!(
        r.retire(&succ, T0, 7 * DAY + 1),
        Err(RecordError::GraceTooLong)
    );
    assert_eq!(old.retire(&succ, T0, 0), Err(RecordError::AlreadyRotated));
    assert_eq!(r.retire(&r.id, T0, 0), Err(RecordError::BadKeyId));
    // A never-expiring key gets an expiry from its grace.
    let n = create(
        42,
        "acme",
        KeyLevel::Organization,
        ProjectAccess::AllProjects,
        ExpiryPolicy::Never,
    );
    let retired = n.record.retire(&succ, T0, 0).unwrap();
    assert_eq!(retired.expires_at, Some(T0));
    assert_eq!(retired.status_at(T0), EffectiveStatus::Expired);
}

#[test]
fn project_registrations_are_checked() {
    assert_eq!(check_project("acme", "  Billing  "), Ok("Billing".into()));
    assert_eq!(
        check_project("Acme", "x"),
        Err(RecordError::BadOrganization)
    );
    assert_eq!(check_project("acme", ""), Err(RecordError::NameEmpty));
    assert_eq!(
        check_project("acme", "a\tb"),
        Err(RecordError::NameControlCharacter)
    );
    assert_eq!(
        check_project("acme", &"x".repeat(101)),
        Err(RecordError::NameTooLong)
    );
}
