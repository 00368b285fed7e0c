//! Snapshots written by the CLI, loaded into the component's validator as
//! another runtime would: the same decisions as `keygate verify`.

use keygate::Runtime;
use keygate::runtime::bindings as b;

use crate::support::{Kg, key_id};

fn trusted(kg: &Kg) -> b::IssuerKey {
    let shown = kg.json(&["issuer", "show"]);
    b::IssuerKey {
        id: shown["issuer_key_id"].as_str().unwrap().to_string(),
        public_key: hex::decode(shown["public_key"].as_str().unwrap()).unwrap(),
    }
}

fn write_snapshot(kg: &Kg, name: &str) -> (std::path::PathBuf, serde_json::Value) {
    let path = kg.path().join(name);
    let info = kg.json(&["snapshot", "write", path.to_str().unwrap()]);
    (path, info)
}

#[test]
fn a_cli_snapshot_decides_in_the_component_like_verify() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let q = kg.project("acme", "Q");
    let g = kg.project("globex", "G");
    let gone = kg.project("acme", "Gone");
    let all = kg.key(&[
        "--org",
        "acme",
        "--name",
        "all",
        "--all-projects",
        "--expires",
        "30d",
    ]);
    let sel = kg.key(&["--org", "acme", "--name", "sel", "--projects", &q]);
    let dead = kg.key(&["--org", "acme", "--name", "dead", "--all-projects"]);
    let glob = kg.key(&["--project", &g, "--name", "g"]);
    kg.ok(&["key", "delete", &key_id(&dead), "--yes"]);
    kg.ok(&["project", "delete", &gone, "--yes"]);
    let (path, info) = write_snapshot(&kg, "s1.kgs");
    assert_eq!(
        (
            info["keys"].clone(),
            info["projects"].clone(),
            info["tombstones"].clone()
        ),
        (3.into(), 4.into(), 1.into())
    );
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(info["bytes"], bytes.len());
    let seq = info["sequence"].as_u64().unwrap();
    assert_eq!(seq, kg.json(&["audit"]).as_array().unwrap().len() as u64);

    let rt = Runtime::new().unwrap();
    let mut m = rt.instantiate().unwrap();
    let v = m.validator(&[trusted(&kg)]).unwrap();
    let loaded = m.validator_load_snapshot(v, &bytes).unwrap().unwrap();
    assert_eq!((loaded.sequence, loaded.keys), (seq, 3));
    assert_eq!(m.validator_sequence(v).unwrap(), Some(seq));
    let now = keygate::admin::now().unwrap();
    let mut compared = 0;
    for key in [&all, &sel, &dead, &glob, &"kg_nope".to_string()] {
        for project in [&p, &q, &g, &gone, &"prj_nowhere".to_string()] {
            let cli = kg.decide(key, project, &[]);
            let got = m
                .validator_authorize(v, key, project, b::Scope::TriggerWorkflows, now)
                .unwrap();
            let component = match got {
                b::Authorization::Allow(_) => "allow".to_string(),
                b::Authorization::Deny(r) => m.deny_reason_text(r).unwrap().message,
            };
            assert_eq!(component, cli, "{key} on {project}");
            compared += 1;
        }
    }
    assert_eq!(compared, 25);

    // A change, a newer snapshot: the validator follows; the older one is
    // refused as a rollback, and a damaged file changes nothing.
    kg.ok(&["key", "disable", &key_id(&all)]);
    let (path2, info2) = write_snapshot(&kg, "s2.kgs");
    assert!(info2["sequence"].as_u64().unwrap() > seq);
    let bytes2 = std::fs::read(&path2).unwrap();
    // A flipped signature bit, and a flipped bit in the organizations'
    // count: refused whole and in pieces (one byte, seven, the rest).
    let mut bad_signature = bytes2.clone();
    *bad_signature.last_mut().unwrap() ^= 4;
    let mut bad_count = bytes2.clone();
    bad_count[40] ^= 4;
    for (bad, refusal) in [
        (&bad_signature, b::SnapshotError::SignatureInvalid),
        (&bad_count, b::SnapshotError::NotCanonical),
    ] {
        assert_eq!(m.validator_load_snapshot(v, bad).unwrap(), Err(refusal));
        for piece in [1, 7, bytes2.len()] {
            assert_eq!(
                m.validator_load_snapshot_in_pieces(v, bad, piece).unwrap(),
                Err(refusal)
            );
        }
    }
    assert_eq!(m.validator_sequence(v).unwrap(), Some(seq));
    assert!(matches!(
        m.validator_authorize(v, &all, &p, b::Scope::TriggerWorkflows, now)
            .unwrap(),
        b::Authorization::Allow(_)
    ));
    // In pieces of 7 bytes, on another validator of the same module: the
    // same answer as the whole file.
    let whole = m.validator_load_snapshot(v, &bytes2).unwrap().unwrap();
    let v7 = m.validator(&[trusted(&kg)]).unwrap();
    assert_eq!(
        m.validator_load_snapshot_in_pieces(v7, &bytes2, 7).unwrap(),
        Ok(whole)
    );
    for v in [v, v7] {
        assert_eq!(
            m.validator_authorize(v, &all, &p, b::Scope::TriggerWorkflows, now)
                .unwrap(),
            b::Authorization::Deny(b::DenyReason::Disabled)
        );
        assert!(matches!(
            m.validator_authorize(v, &sel, &q, b::Scope::TriggerWorkflows, now)
                .unwrap(),
            b::Authorization::Allow(_)
        ));
    }
    assert_eq!(
        m.validator_load_snapshot(v, &bytes).unwrap(),
        Err(b::SnapshotError::NotNewer(
            info2["sequence"].as_u64().unwrap()
        ))
    );

    // inspect: with the store's issuer, with a pinned key, and refusals.
    let shown = kg.json(&["snapshot", "inspect", path2.to_str().unwrap()]);
    assert_eq!(shown["sequence"], info2["sequence"]);
    let pk = kg.json(&["issuer", "show"])["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let other = Kg::new();
    let pinned = other.json(&[
        "snapshot",
        "inspect",
        path2.to_str().unwrap(),
        "--trust",
        &pk,
    ]);
    assert_eq!(pinned["sha256"], shown["sha256"]);
    std::fs::write(kg.path().join("bad.kgs"), &bad_signature).unwrap();
    let err = kg.fail(&[
        "snapshot",
        "inspect",
        kg.path().join("bad.kgs").to_str().unwrap(),
    ]);
    assert!(err.contains("signature does not verify"), "{err}");
    other.project("acme", "X");
    let err = other.fail(&["snapshot", "inspect", path2.to_str().unwrap()]);
    assert!(err.contains("signature does not verify"), "{err}");
    assert!(
        kg.fail(&["snapshot", "write", "-"])
            .contains("needs a file path")
    );
}

#[test]
fn a_tampered_store_is_never_re_signed_into_a_snapshot() {
    let kg = Kg::new();
    kg.project("acme", "P");
    let key = kg.key(&["--org", "acme", "--name", "k", "--all-projects"]);
    let id = key_id(&key);
    {
        let db = crate::support::open_sled(&kg.path().join("db"));
        let keys = db.open_tree(keygate::schema::tree::KEYS).unwrap();
        let mut signed = keygate::schema::decode_signed(&keys.get(&id).unwrap().unwrap()).unwrap();
        signed.signature[3] ^= 1;
        keys.insert(
            id.as_bytes(),
            keygate::schema::encode_signed(&signed).unwrap(),
        )
        .unwrap();
        db.flush().unwrap();
    }
    let out = kg.path().join("s.kgs");
    let err = kg.fail(&["snapshot", "write", out.to_str().unwrap()]);
    assert!(
        err.contains("failed signature verification") && err.contains(&id),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn a_cli_delta_carries_only_what_changed_and_applies_on_its_base() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let mut keys = Vec::new();
    for i in 0..6 {
        keys.push(kg.key(&[
            "--org",
            "acme",
            "--name",
            &format!("k{i}"),
            "--all-projects",
        ]));
    }
    let (full, info) = write_snapshot(&kg, "full.kgs");
    let base = info["sequence"].as_u64().unwrap();
    // Three changes: a disable, a delete, a new project.
    kg.ok(&["key", "disable", &key_id(&keys[0])]);
    kg.ok(&["key", "delete", &key_id(&keys[1]), "--yes"]);
    let q = kg.project("acme", "Q");
    let delta_path = kg.path().join("delta.kgs");
    let d = kg.json(&[
        "snapshot",
        "write",
        delta_path.to_str().unwrap(),
        "--since",
        &base.to_string(),
    ]);
    assert_eq!(d["base"], base);
    assert_eq!(
        (
            d["keys"].clone(),
            d["projects"].clone(),
            d["tombstones"].clone()
        ),
        (1.into(), 1.into(), 1.into())
    );
    assert!(d["bytes"].as_u64().unwrap() < info["bytes"].as_u64().unwrap());

    let rt = Runtime::new().unwrap();
    let mut m = rt.instantiate().unwrap();
    let v = m.validator(&[trusted(&kg)]).unwrap();
    let delta = std::fs::read(&delta_path).unwrap();
    assert_eq!(
        m.validator_load_snapshot(v, &delta).unwrap(),
        Err(b::SnapshotError::BaseMismatch(None))
    );
    m.validator_load_snapshot(v, &std::fs::read(&full).unwrap())
        .unwrap()
        .unwrap();
    m.validator_load_snapshot(v, &delta).unwrap().unwrap();
    assert_eq!(m.validator_sequence(v).unwrap(), d["sequence"].as_u64());
    let now = keygate::admin::now().unwrap();
    for key in &keys {
        for project in [&p, &q] {
            let cli = kg.decide(key, project, &[]);
            let got = m
                .validator_authorize(v, key, project, b::Scope::TriggerWorkflows, now)
                .unwrap();
            let component = match got {
                b::Authorization::Allow(_) => "allow".to_string(),
                b::Authorization::Deny(r) => m.deny_reason_text(r).unwrap().message,
            };
            assert_eq!(component, cli, "{key} on {project}");
        }
    }
    // Nothing since the current sequence: one error line.
    let now_seq = d["sequence"].as_u64().unwrap().to_string();
    let err = kg.fail(&[
        "snapshot",
        "write",
        delta_path.to_str().unwrap(),
        "--since",
        &now_seq,
    ]);
    assert!(err.contains("nothing to put in a delta"), "{err}");
}

/// A snapshot re-signs the facts it carries, so it must never carry one
/// keygate did not write: a fact whose change-index tag vouches for its
/// exact stored bytes is taken as written; any other is checked by its
/// signature, and a bad one refuses the whole snapshot.
#[test]
fn a_snapshot_refuses_a_tampered_fact_whatever_vouches_for_its_neighbours() {
    let kg = Kg::new();
    kg.project("acme", "P");
    let a = key_id(&kg.key(&["--org", "acme", "--name", "a", "--all-projects"]));
    let b = key_id(&kg.key(&["--org", "acme", "--name", "b", "--all-projects"]));
    let (_, info) = write_snapshot(&kg, "ok.kgs");
    assert_eq!(info["keys"], 2);
    let keys = |f: &dyn Fn(&sled::Tree)| {
        let db = crate::support::open_sled(&kg.path().join("db"));
        f(&db.open_tree(keygate::schema::tree::KEYS).unwrap());
        db.flush().unwrap();
    };
    let original = {
        let db = crate::support::open_sled(&kg.path().join("db"));
        let t = db.open_tree(keygate::schema::tree::KEYS).unwrap();
        (
            t.get(&a).unwrap().unwrap().to_vec(),
            t.get(&b).unwrap().unwrap().to_vec(),
        )
    };
    let refused = |what: &str| {
        let path = kg.path().join("bad.kgs");
        let err = kg.fail(&["snapshot", "write", path.to_str().unwrap()]);
        assert!(
            err.contains("damaged or tampered") || err.contains("tampered"),
            "{what}: {err}"
        );
        assert!(!path.exists(), "{what}: a file was written");
    };
    // One byte of a's signature.
    keys(&|t| {
        let mut v = original.0.clone();
        let last = v.len() - 1;
        v[last] ^= 1;
        t.insert(&a, v).unwrap();
    });
    refused("a flipped signature byte");
    // a's genuine bytes under b's id (b's tag does not vouch for them).
    keys(&|t| {
        t.insert(&a, original.0.clone()).unwrap();
        t.insert(&b, original.0.clone()).unwrap();
    });
    refused("a record under another id");
    keys(&|t| {
        t.insert(&b, original.1.clone()).unwrap();
    });
    let (_, info) = write_snapshot(&kg, "again.kgs");
    assert_eq!(info["keys"], 2);
}
