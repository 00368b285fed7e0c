//! The shipped component, driven through wasmtime exactly as the host does,
//! against the shared vectors in `tests/vectors/policy-v1.json`.

use keygate::admin::reason_code;
use keygate::runtime::bindings as b;
use keygate::{Module, Runtime};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::new(None).unwrap())
}

fn module() -> Module {
    runtime().instantiate().unwrap()
}

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/policy-v1.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn decision_json(d: &b::Decision) -> Value {
    match d {
        b::Decision::Allow(a) => serde_json::json!({"allow": {
            "key_id": a.key_id, "record_version": a.record_version, "expires_at": a.expires_at}}),
        b::Decision::Deny(r) => serde_json::json!({"deny": reason_code(*r)}),
    }
}

fn request(q: &Value) -> b::ValidationRequest {
    assert_eq!(q["action"], "trigger-workflows");
    b::ValidationRequest {
        presented_key: q["presented_key"].as_str().unwrap().into(),
        organization: q["organization"].as_str().unwrap().into(),
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

#[test]
fn the_component_imports_nothing_and_exports_the_policy() {
    let (imports, exports) = runtime().interface();
    assert!(imports.is_empty(), "component imports {imports:?}");
    assert!(
        exports.contains(&"keygate:policy/policy@0.1.0".to_string()),
        "{exports:?}"
    );
    assert!(
        exports.contains(&"keygate:policy/types@0.1.0".to_string()),
        "{exports:?}"
    );
}

#[test]
fn every_vector_case_decides_the_same_inside_the_component() {
    let v = vectors();
    let trusted = trusted(&v);
    let records = signed(&v);
    let mut m = module();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for c in cases {
        let rec = c["record"].as_str().map(|n| &records[n]);
        let got = m.evaluate(&request(&c["request"]), rec, &trusted).unwrap();
        assert_eq!(decision_json(&got), c["expect"], "{}", c["name"]);
    }
}

#[test]
fn the_validator_resource_agrees_with_evaluate_for_verified_records() {
    let v = vectors();
    let trusted = trusted(&v);
    let records = signed(&v);
    let mut m = module();
    let val = m.validator(&trusted).unwrap();
    let mut loaded = 0;
    for (name, r) in &records {
        match m.validator_load(val, r).unwrap() {
            Ok(b::LoadOutcome::Added) => loaded += 1,
            Ok(other) => panic!("{name}: {other:?}"),
            Err(e) => {
                assert_eq!(e, b::LoadError::SignatureInvalid, "{name}");
                assert!(
                    name == "org-tampered" || name == "org-foreign-issuer",
                    "{name} refused"
                );
            }
        }
    }
    assert_eq!(loaded, 5);
    assert_eq!(m.validator_len(val).unwrap(), 5);
    // Loading the same records again changes nothing.
    for r in records.values() {
        let again = m.validator_load(val, r).unwrap();
        assert!(matches!(again, Ok(b::LoadOutcome::Stale) | Err(_)));
    }
    for c in v["cases"].as_array().unwrap() {
        let Some(name) = c["record"].as_str() else {
            continue;
        };
        let req = request(&c["request"]);
        let own = m.parse_key(&req.presented_key).unwrap().ok();
        let rec_id = m
            .decode_record(&records[name].canonical)
            .unwrap()
            .unwrap()
            .id;
        let verified = !matches!(
            c["expect"]["deny"].as_str(),
            Some("record-signature-invalid")
        );
        if verified && own.as_deref() == Some(rec_id.as_str()) {
            let got = m.validator_check(val, &req).unwrap();
            assert_eq!(decision_json(&got), c["expect"], "{}", c["name"]);
        }
    }
    // A forgotten id never comes back.
    let (_, first) = records.iter().next().unwrap();
    let id = m.decode_record(&first.canonical).unwrap().unwrap().id;
    assert!(m.validator_forget(val, &id).unwrap());
    assert_eq!(
        m.validator_load(val, first).unwrap(),
        Err(b::LoadError::Forgotten)
    );
}

#[test]
fn keys_and_records_round_trip_through_the_component() {
    let v = vectors();
    let mut m = module();
    for k in v["keys"].as_array().unwrap() {
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
    }
    for r in v["records"].as_array().unwrap() {
        let canonical = unhex(&r["canonical"]);
        let rec = m.decode_record(&canonical).unwrap().unwrap();
        assert_eq!(rec.id, r["fields"]["id"].as_str().unwrap());
        assert_eq!(rec.name, r["fields"]["name"].as_str().unwrap());
        assert_eq!(m.encode_record(&rec).unwrap().unwrap(), canonical);
    }
    let issuer = &trusted(&v)[0];
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
            organization: "acme".into(),
            project: "p".into(),
            action: b::Scope::TriggerWorkflows,
            now: u64::MAX,
        };
        assert_eq!(
            m.evaluate(&req, None, &trusted).unwrap(),
            b::Decision::Deny(b::DenyReason::Malformed)
        );
    }
    assert!(m.decode_record(&[0xff; 4096]).unwrap().is_err());
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
