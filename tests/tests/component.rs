//! The shipped component, driven through wasmtime exactly as the host does,
//! against the shared vectors in `tests/vectors/policy-v2.json`.

use keygate::runtime::bindings as b;
use keygate::{Module, Runtime};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::new().unwrap())
}

fn module() -> Module {
    runtime().instantiate().unwrap()
}

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/policy-v2.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

/// A decision as the vectors write it; the reason's code comes from the
/// component itself.
fn decision_json(m: &mut Module, d: &b::Decision) -> Value {
    match d {
        b::Decision::Allow(a) => serde_json::json!({"allow": {
            "key_id": a.key_id, "record_version": a.record_version, "expires_at": a.expires_at}}),
        b::Decision::Deny(r) => serde_json::json!({"deny": m.deny_reason_text(*r).unwrap().code}),
    }
}

fn request(q: &Value) -> b::ValidationRequest {
    assert_eq!(q["action"], "trigger-workflows");
    b::ValidationRequest {
        presented_key: q["presented_key"].as_str().unwrap().into(),
        project: q["project"].as_str().unwrap().into(),
        action: b::Scope::TriggerWorkflows,
        now: q["now"].as_u64().unwrap(),
    }
}

fn trusted(v: &Value) -> Vec<b::IssuerKey> {
    vec![b::IssuerKey {
        id: v["issuer"]["key_id"].as_str().unwrap().into(),
        public_key: unhex(&v["issuer"]["public_key"]),
    }]
}

fn signed(v: &Value) -> BTreeMap<String, b::SignedRecord> {
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                b::SignedRecord {
                    canonical: unhex(&r["canonical"]),
                    signature: unhex(&r["signature"]),
                    issuer_key_id: r["issuer_key_id"].as_str().unwrap().into(),
                },
            )
        })
        .collect()
}

fn evidence(c: &Value, records: &BTreeMap<String, b::SignedRecord>) -> b::Evidence {
    let pick = |field: &str| c[field].as_str().map(|n| records[n].clone());
    b::Evidence {
        key: pick("key"),
        tombstone: pick("tombstone"),
        project: pick("project"),
        organization: pick("organization"),
    }
}

#[test]
fn the_component_imports_nothing_and_exports_the_policy() {
    let (imports, exports) = runtime().interface();
    assert!(imports.is_empty(), "component imports {imports:?}");
    assert_eq!(
        exports,
        vec![
            "keygate:policy/types@0.2.0".to_string(),
            "keygate:policy/policy@0.2.0".to_string()
        ]
    );
}

#[test]
fn every_vector_case_decides_the_same_inside_the_component() {
    let v = vectors();
    let trusted = trusted(&v);
    let records = signed(&v);
    let mut m = module();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 38);
    for c in cases {
        let got = m
            .evaluate(&request(&c["request"]), &evidence(c, &records), &trusted)
            .unwrap();
        assert_eq!(decision_json(&mut m, &got), c["expect"], "{}", c["name"]);
    }
}

#[test]
fn the_validator_resource_agrees_with_evaluate_where_the_vectors_say_so() {
    let v = vectors();
    let trusted = trusted(&v);
    let records = signed(&v);
    let mut m = module();
    let val = m.validator(&trusted).unwrap();
    // In file order: every record that verifies loads, the others are refused.
    let mut refused = Vec::new();
    for r in v["records"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        match m.validator_load(val, &records[name]).unwrap() {
            Ok(b::LoadOutcome::Added) => {}
            Ok(other) => panic!("{name}: {other:?}"),
            Err(e) => {
                assert_eq!(e, b::LoadError::SignatureInvalid, "{name}");
                refused.push(name);
            }
        }
    }
    assert_eq!(
        refused,
        [
            "org-tampered",
            "org-foreign-issuer",
            "prj-alpha-moved",
            "tombstone-foreign-issuer",
            "organization-initech-lifted"
        ]
    );
    // Eleven verified key records less the deleted one.
    assert_eq!(m.validator_len(val).unwrap(), 10);
    // Loading the verified records again changes nothing; the deleted key's
    // record is refused for good.
    for (name, r) in &records {
        let again = m.validator_load(val, r).unwrap();
        match name.as_str() {
            "org-deleted" => assert_eq!(again, Err(b::LoadError::Forgotten)),
            n if refused.contains(&n) => assert_eq!(again, Err(b::LoadError::SignatureInvalid)),
            _ => assert_eq!(again, Ok(b::LoadOutcome::Stale), "{name}"),
        }
    }
    let mut compared = 0;
    for c in v["cases"].as_array().unwrap() {
        if c["validator"] != true {
            continue;
        }
        compared += 1;
        let got = m.validator_check(val, &request(&c["request"])).unwrap();
        assert_eq!(decision_json(&mut m, &got), c["expect"], "{}", c["name"]);
    }
    assert_eq!(compared, 28);
    // A forgotten id never comes back.
    let first = &records["org-all-30d"];
    let b::SignedBody::Key(rec) = m.decode(&first.canonical).unwrap().unwrap() else {
        panic!("not a key record")
    };
    assert!(m.validator_forget(val, &rec.id).unwrap());
    assert_eq!(
        m.validator_load(val, first).unwrap(),
        Err(b::LoadError::Forgotten)
    );
}

#[test]
fn keys_and_records_round_trip_through_the_component() {
    let v = vectors();
    let mut m = module();
    let trusted = trusted(&v);
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 13);
    for k in keys {
        let issued = m
            .make_key(k["prefix"].as_str().unwrap(), &unhex(&k["random"]))
            .unwrap()
            .unwrap();
        assert_eq!(issued.expose_key(), k["key"].as_str().unwrap());
        assert_eq!(issued.id, k["id"].as_str().unwrap());
        assert_eq!(issued.key_hash, unhex(&k["sha256"]));
        assert_eq!(
            m.parse_key(issued.expose_key()).unwrap(),
            Ok(issued.id.clone())
        );
        assert!(m.looks_like_key(issued.expose_key(), None).unwrap());
    }
    let records = signed(&v);
    let mut kinds = BTreeMap::new();
    for r in v["records"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let signed = &records[name];
        let body = m.decode(&signed.canonical).unwrap().unwrap();
        let (kind, id) = match &body {
            b::SignedBody::Key(k) => ("key", k.id.clone()),
            b::SignedBody::Project(p) => ("project", p.id.clone()),
            b::SignedBody::Tombstone(t) => ("tombstone", t.id.clone()),
            b::SignedBody::Organization(o) => ("organization", o.slug.clone()),
        };
        *kinds.entry(kind).or_insert(0) += 1;
        assert_eq!(r["kind"], kind, "{name}");
        let id_field = if kind == "organization" { "slug" } else { "id" };
        assert_eq!(r["fields"][id_field], id.as_str(), "{name}");
        assert_eq!(m.encode(&body).unwrap().unwrap(), signed.canonical);
        let opened = m.open(signed, &trusted).unwrap();
        match name {
            "org-tampered"
            | "org-foreign-issuer"
            | "prj-alpha-moved"
            | "tombstone-foreign-issuer"
            | "organization-initech-lifted" => {
                assert_eq!(opened, Err(b::LoadError::SignatureInvalid), "{name}")
            }
            _ => assert_eq!(opened, Ok(body), "{name}"),
        }
    }
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("key", 13),
            ("project", 10),
            ("tombstone", 2),
            ("organization", 6)
        ])
    );
    let issuer = &trusted[0];
    assert_eq!(
        m.issuer_key_id(&issuer.public_key).unwrap().unwrap(),
        issuer.id
    );
    assert_eq!(m.check_issuer_key(issuer).unwrap(), Ok(()));
    assert_eq!(
        m.make_key("kg", &[0; 39]).unwrap(),
        Err(b::KeyError::BadRandomLength)
    );
    assert_eq!(
        m.make_key("KG", &[0; 40]).unwrap(),
        Err(b::KeyError::BadPrefix)
    );
}

#[test]
fn names_and_messages_come_from_the_component() {
    let mut m = module();
    let t = m.deny_reason_text(b::DenyReason::NotYetValid).unwrap();
    assert_eq!(
        (t.code.as_str(), t.message.as_str()),
        ("not-yet-valid", "key not yet valid")
    );
    let classes: Vec<_> = [
        b::DenyReason::SecretMismatch,
        b::DenyReason::RecordSignatureInvalid,
        b::DenyReason::UnknownProject,
        b::DenyReason::WrongOrganization,
        b::DenyReason::Expired,
    ]
    .into_iter()
    .map(|r| m.classify_deny(r).unwrap())
    .collect();
    assert_eq!(
        classes,
        [
            b::DenyClass::Unauthenticated,
            b::DenyClass::Unauthenticated,
            b::DenyClass::Forbidden,
            b::DenyClass::Forbidden,
            b::DenyClass::Forbidden,
        ]
    );
    let t = m
        .record_error_text(&b::RecordError::ExpiryOutOfRange(91))
        .unwrap();
    assert_eq!(t.code, "expiry-out-of-range");
    assert_eq!(
        t.message,
        "expiry of 91 days is outside the policy (7 to 90 days, or never)"
    );
    let t = m.record_error_text(&b::RecordError::KeyDisabled).unwrap();
    assert_eq!(t.code, "key-disabled");
    assert_eq!(m.scopes().unwrap(), vec![b::Scope::TriggerWorkflows]);
    assert_eq!(
        m.scope_name(b::Scope::TriggerWorkflows).unwrap(),
        "trigger-workflows"
    );
    assert_eq!(
        m.scope_named("trigger-workflows").unwrap(),
        Some(b::Scope::TriggerWorkflows)
    );
    assert_eq!(m.scope_named("admin").unwrap(), None);
}

#[test]
fn check_create_normalises_and_refuses_through_the_component() {
    let mut m = module();
    let k = m.make_key("kg", &[7; 40]).unwrap().unwrap();
    let req = b::CreateRequest {
        id: k.id.clone(),
        organization: "acme".into(),
        name: "  crm sync ".into(),
        level: b::KeyLevel::Project("prj_a".into()),
        scopes: vec![b::Scope::TriggerWorkflows],
        access: b::ProjectAccess::AllProjects,
        expiry: b::ExpiryPolicy::Days(30),
        now: 1_800_000_000,
        key_hash: k.key_hash.clone(),
        rotated_from: None,
    };
    let rec = m.check_create(&req).unwrap().unwrap();
    assert_eq!(rec.name, "crm sync");
    assert_eq!(rec.access, b::ProjectAccess::Selected(vec!["prj_a".into()]));
    assert_eq!(rec.expires_at, Some(1_800_000_000 + 30 * 86_400));
    let bad = b::CreateRequest {
        expiry: b::ExpiryPolicy::Days(91),
        ..req.clone()
    };
    assert_eq!(
        m.check_create(&bad).unwrap(),
        Err(b::RecordError::ExpiryOutOfRange(91))
    );
    let bad = b::CreateRequest {
        access: b::ProjectAccess::Selected(vec![]),
        ..req
    };
    assert_eq!(
        m.check_create(&bad).unwrap(),
        Err(b::RecordError::EmptyProjectSelection)
    );
}

#[test]
fn hostile_inputs_get_answers_not_traps() {
    let v = vectors();
    let trusted = trusted(&v);
    let mut m = module();
    let long = "k".repeat(1 << 20);
    for presented in [
        "",
        "\0",
        "kg_",
        long.as_str(),
        "kg_\u{1F600}\u{1F600}\u{1F600}",
    ] {
        let req = b::ValidationRequest {
            presented_key: presented.into(),
            project: "p".into(),
            action: b::Scope::TriggerWorkflows,
            now: u64::MAX,
        };
        let none = b::Evidence {
            key: None,
            tombstone: None,
            project: None,
            organization: None,
        };
        assert_eq!(
            m.evaluate(&req, &none, &trusted).unwrap(),
            b::Decision::Deny(b::DenyReason::Malformed)
        );
    }
    assert_eq!(
        m.decode(&[0xff; 4096]).unwrap(),
        Err(b::RecordError::NotCanonical)
    );
    let junk = b::SignedRecord {
        canonical: vec![1, 2, 3],
        signature: vec![],
        issuer_key_id: String::new(),
    };
    let val = m.validator(&[]).unwrap();
    assert_eq!(
        m.validator_load(val, &junk).unwrap(),
        Err(b::LoadError::SignatureInvalid)
    );
}

#[test]
fn the_snapshot_vectors_load_and_decide_inside_the_component() {
    let v = vectors();
    let trusted = trusted(&v);
    let mut m = module();
    let val = m.validator(&trusted).unwrap();
    let snaps = v["snapshots"].as_array().unwrap();
    let full = unhex(&snaps[0]["file"]);
    let delta = unhex(&snaps[1]["file"]);
    // A delta before its base is held, then the full snapshot, then the delta.
    assert_eq!(
        m.validator_load_snapshot(val, &delta).unwrap(),
        Err(b::SnapshotError::BaseMismatch(None))
    );
    let info = m.validator_load_snapshot(val, &full).unwrap().unwrap();
    assert_eq!(
        (
            info.sequence,
            info.organizations,
            info.keys,
            info.projects,
            info.tombstones
        ),
        (7, 5, 10, 9, 1)
    );
    assert_eq!(m.inspect_snapshot(&full, &trusted).unwrap(), Ok(info));
    // The same file as hex text loads the same (for runtimes that pass
    // strings faster than bytes); bad hex is not canonical.
    let hexed = m.validator(&trusted).unwrap();
    let text = snaps[0]["file"].as_str().unwrap();
    assert_eq!(
        m.validator_load_snapshot_hex(hexed, &text[1..]).unwrap(),
        Err(b::SnapshotError::NotCanonical)
    );
    assert_eq!(
        m.validator_load_snapshot_hex(hexed, text).unwrap(),
        Ok(info)
    );
    let mut compared = 0;
    for c in v["cases"].as_array().unwrap() {
        if c["validator"] != true {
            continue;
        }
        let req = request(&c["request"]);
        let got = m.validator_check(val, &req).unwrap();
        assert_eq!(decision_json(&mut m, &got), c["expect"], "{}", c["name"]);
        let fast = m
            .validator_authorize(val, &req.presented_key, &req.project, req.action, req.now)
            .unwrap();
        match (&got, fast) {
            (b::Decision::Allow(a), b::Authorization::Allow(x)) => assert_eq!(
                (&a.key_id, a.record_version, a.expires_at),
                (&x.key_id, x.record_version, x.expires_at)
            ),
            (b::Decision::Deny(r), b::Authorization::Deny(y)) => assert_eq!(*r, y),
            other => panic!("{}: {other:?}", c["name"]),
        }
        compared += 1;
    }
    assert_eq!(compared, 28);
    m.validator_load_snapshot(val, &delta).unwrap().unwrap();
    let key = v["keys"][0]["key"].as_str().unwrap();
    assert_eq!(
        m.validator_authorize(
            val,
            key,
            "prj_alpha",
            b::Scope::TriggerWorkflows,
            1_800_000_001
        )
        .unwrap(),
        b::Authorization::Deny(b::DenyReason::Disabled)
    );
    assert_eq!(m.validator_sequence(val).unwrap(), Some(9));
    assert_eq!(
        m.validator_load_snapshot(val, &full).unwrap(),
        Err(b::SnapshotError::NotNewer(9))
    );
}
