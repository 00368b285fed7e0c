//! The threat model, enforced: someone who can write the data directory
//! (`db/`, `cache/`) but cannot read the issuer secret may make keys fail,
//! never turn a deny into an allow.

use std::collections::BTreeMap;
use std::path::Path;

use keygate::admin::{Keygate, Location};
use keygate::runtime::bindings::Decision;
use keygate::schema::{self, tree};

use crate::support::{Kg, key_id, open_sled};

/// Run `f` on one sled tree of the store, as someone with write access to
/// `db/` could (no keygate is running).
fn with_tree<T>(kg: &Kg, name: &str, f: impl FnOnce(&sled::Tree) -> T) -> T {
    let db = crate::support::open_sled(&kg.path().join("db"));
    let t = db.open_tree(name).unwrap();
    let out = f(&t);
    db.flush().unwrap();
    out
}

fn get(kg: &Kg, tree_name: &str, id: &str) -> Vec<u8> {
    with_tree(kg, tree_name, |t| t.get(id).unwrap().unwrap().to_vec())
}

fn put(kg: &Kg, tree_name: &str, id: &str, value: &[u8]) {
    with_tree(kg, tree_name, |t| {
        t.insert(id, value).unwrap();
    });
}

#[test]
fn a_project_value_stored_under_another_project_never_allows() {
    let kg = Kg::new();
    let acme = kg.project("acme", "A");
    let globex = kg.project("globex", "G");
    let acme_key = kg.key(&["--org", "acme", "--name", "a", "--all-projects"]);
    let globex_key = kg.key(&["--org", "globex", "--name", "g", "--all-projects"]);
    assert_eq!(kg.decide(&acme_key, &globex, &[]), "wrong organization");
    assert_eq!(kg.decide(&globex_key, &acme, &[]), "wrong organization");
    // Swap the two registrations' stored values.
    let (a, g) = (
        get(&kg, tree::PROJECTS, &acme),
        get(&kg, tree::PROJECTS, &globex),
    );
    put(&kg, tree::PROJECTS, &acme, &g);
    put(&kg, tree::PROJECTS, &globex, &a);
    assert_eq!(
        kg.decide(&acme_key, &globex, &[]),
        "project registration invalid"
    );
    assert_eq!(
        kg.decide(&globex_key, &acme, &[]),
        "project registration invalid"
    );
    // The keys of the right organization fail too (deny, never allow), and
    // the operator is told.
    let (code, out, err) = kg.verify(acme_key.as_bytes(), &acme, &[]);
    assert_eq!(
        (code, out.trim()),
        (1, "deny: project registration invalid")
    );
    assert!(err.contains("warning") && err.contains(&acme), "{err}");
    let err = kg.fail(&["project", "delete", &acme]);
    assert!(err.contains("project registration"), "{err}");
}

#[test]
fn a_registration_moved_to_another_organization_never_allows() {
    let kg = Kg::new();
    let globex = kg.project("globex", "G");
    let acme_key = kg.key(&["--org", "acme", "--name", "a", "--all-projects"]);
    assert_eq!(kg.decide(&acme_key, &globex, &[]), "wrong organization");
    let mut signed = schema::decode_signed(&get(&kg, tree::PROJECTS, &globex)).unwrap();
    let mut reg = keygate_policy::ProjectRegistration::decode(&signed.canonical).unwrap();
    reg.organization = "acme".into();
    signed.canonical = reg.encode().unwrap();
    put(
        &kg,
        tree::PROJECTS,
        &globex,
        &schema::encode_signed(&signed).unwrap(),
    );
    assert_eq!(
        kg.decide(&acme_key, &globex, &[]),
        "project registration invalid"
    );
    // Listings do not trust it either.
    let o = kg.run(&["--json", "project", "list", "--org", "acme"]);
    assert!(o.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed, serde_json::json!([]));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&globex));
    let err = kg.fail(&[
        "key",
        "create",
        "--expires",
        "never",
        "--org",
        "acme",
        "--name",
        "x",
        "--projects",
        &globex,
    ]);
    assert!(err.contains("failed signature verification"), "{err}");
}

#[test]
fn an_older_record_put_back_under_a_deleted_id_stays_deleted() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let key = kg.key(&["--org", "acme", "--name", "gone", "--all-projects"]);
    let id = key_id(&key);
    let old = get(&kg, tree::KEYS, &id);
    kg.ok(&["key", "delete", &id, "--yes"]);
    assert_eq!(kg.decide(&key, &p, &[]), "unknown key");
    put(&kg, tree::KEYS, &id, &old);
    assert_eq!(kg.decide(&key, &p, &[]), "unknown key");
    // Nothing admin-side brings it back either.
    assert_eq!(
        kg.json(&["key", "list", "--org", "acme"]),
        serde_json::json!([])
    );
    for cmd in ["show", "enable", "disable", "rotate", "delete"] {
        let err = kg.fail(&["key", cmd, &id]);
        assert_eq!(err, format!("error: key `{id}` was deleted\n"), "{cmd}");
    }
    // A tombstone signed by someone else is not trusted: it is reported, and
    // the key is denied all the same.
    let other = Kg::new();
    let other_key = other.key(&["--org", "acme", "--name", "x", "--all-projects"]);
    other.ok(&["key", "delete", &key_id(&other_key), "--yes"]);
    let foreign_tomb = get(&other, tree::DELETED_KEYS, &key_id(&other_key));
    put(&kg, tree::DELETED_KEYS, &id, &foreign_tomb);
    assert_eq!(kg.decide(&key, &p, &[]), "record signature invalid");
    // Removing the tombstone outright is a rollback of that one deletion: the
    // threat model's stated exception (see the README).
}

#[test]
fn a_cache_file_from_another_store_is_refused_and_rebuilt() {
    let a = Kg::new();
    let b = Kg::new();
    let pa = a.project("acme", "P");
    let ka = a.key(&["--org", "acme", "--name", "a", "--all-projects"]);
    b.project("acme", "P");
    let cache_file = |kg: &Kg| {
        let dir = kg.path().join("cache");
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    };
    let (fa, fb) = (cache_file(&a), cache_file(&b));
    // Same component, same engine: the same file name in both stores.
    assert_eq!(fa.file_name(), fb.file_name());
    let ours = std::fs::read(&fa).unwrap();
    let theirs = std::fs::read(&fb).unwrap();
    assert_ne!(ours, theirs, "two stores must not share a cache key");
    std::fs::write(&fa, &theirs).unwrap();
    let (code, out, err) = a.verify(ka.as_bytes(), &pa, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning: the compiled-component cache")
            && err.contains("authentication code does not verify"),
        "{err}"
    );
    let rebuilt = std::fs::read(&fa).unwrap();
    assert_ne!(rebuilt, theirs);
    // The rebuilt file is this store's own: used without a warning.
    let (code, _, err) = a.verify(ka.as_bytes(), &pa, &[]);
    assert_eq!((code, err.as_str()), (0, ""));
    // A cut file, or one with a recomputed header, is refused the same way.
    std::fs::write(&fa, &rebuilt[..rebuilt.len() / 2]).unwrap();
    let (code, _, err) = a.verify(ka.as_bytes(), &pa, &[]);
    assert_eq!(code, 0);
    assert!(err.contains("was not used"), "{err}");
}

/// Every decision of `pairs` through the library (the same path as
/// `keygate verify`): "allow", a deny code, or "error: ..." when the store
/// refuses to open or read.
fn decisions(dir: &Path, pairs: &[(String, String)], now: u64) -> Vec<String> {
    let mut kg = match Keygate::open(&Location::new(dir), false) {
        Ok(kg) => kg,
        Err(e) => return vec![format!("error: {e}"); pairs.len()],
    };
    pairs
        .iter()
        .map(
            |(key, project)| match kg.verify(key, project, "trigger-workflows", now) {
                Ok(v) => match v.decision {
                    Decision::Allow(_) => "allow".to_string(),
                    Decision::Deny(_) => v.reason.unwrap().code,
                },
                Err(e) => format!("error: {e}"),
            },
        )
        .collect()
}

#[test]
fn flipping_any_byte_of_any_stored_fact_never_turns_a_deny_into_an_allow() {
    let kg = Kg::new();
    let p1 = kg.project("acme", "P1");
    let p2 = kg.project("acme", "P2");
    let gp = kg.project("globex", "G");
    let gone = kg.project("acme", "Gone");
    kg.ok(&["project", "delete", &gone, "--yes"]);
    let all = kg.key(&[
        "--org",
        "acme",
        "--name",
        "all",
        "--all-projects",
        "--expires",
        "7d",
    ]);
    let sel = kg.key(&["--org", "acme", "--name", "sel", "--projects", &p1]);
    let glob = kg.key(&[
        "--org",
        "globex",
        "--name",
        "g",
        "--all-projects",
        "--expires",
        "7d",
    ]);
    // globex has a key policy, so flips reach its bytes too.
    kg.ok(&["org", "policy", "set", "globex", "--max-expiry", "7d"]);
    let dead = kg.key(&["--org", "acme", "--name", "dead", "--all-projects"]);
    let off = kg.key(&["--project", &p2, "--name", "off"]);
    kg.ok(&["key", "delete", &key_id(&dead), "--yes"]);
    kg.ok(&["key", "disable", &key_id(&off)]);
    let mut pairs = Vec::new();
    for k in [&all, &sel, &glob, &dead, &off] {
        for p in [&p1, &p2, &gp, &gone] {
            pairs.push((k.clone(), p.clone()));
        }
    }
    let now = keygate::admin::now().unwrap();
    let baseline = decisions(kg.path(), &pairs, now);
    let allowed: Vec<bool> = baseline.iter().map(|d| d == "allow").collect();
    assert_eq!(allowed.iter().filter(|a| **a).count(), 4, "{baseline:?}");

    let mut values: BTreeMap<(&str, String), Vec<u8>> = BTreeMap::new();
    for name in [
        tree::KEYS,
        tree::PROJECTS,
        tree::DELETED_KEYS,
        tree::ORGANIZATIONS,
    ] {
        with_tree(&kg, name, |t| {
            for item in t.iter() {
                let (k, v) = item.unwrap();
                values.insert((name, String::from_utf8(k.to_vec()).unwrap()), v.to_vec());
            }
        });
    }
    assert_eq!(values.len(), 4 + 4 + 1 + 2);
    let (mut flips, mut failed_open) = (0, 0);
    let mut changed = BTreeMap::new();
    for ((name, id), value) in &values {
        for pos in 0..value.len() {
            let mut bad = value.clone();
            bad[pos] ^= 1 << (pos % 8);
            put(&kg, name, id, &bad);
            let got = decisions(kg.path(), &pairs, now);
            flips += 1;
            if got[0].starts_with("error: ") && got.iter().all(|g| g == &got[0]) {
                failed_open += 1;
            }
            for (i, d) in got.iter().enumerate() {
                assert!(
                    d != "allow" || allowed[i],
                    "flipping byte {pos} of {name}/{id} allowed {:?} (untampered: {})",
                    pairs[i],
                    baseline[i]
                );
                if *d != baseline[i] {
                    let what = if d.starts_with("error: ") {
                        "error (damaged value)".to_string()
                    } else {
                        d.clone()
                    };
                    *changed.entry(what).or_insert(0) += 1;
                }
            }
        }
        put(&kg, name, id, value);
    }
    assert_eq!(decisions(kg.path(), &pairs, now), baseline);
    println!("{flips} single-bit flips of stored facts; decisions they changed: {changed:?}");
    // The flips did reach the component's checks, not only the value framing.
    assert!(
        changed.contains_key("record-signature-invalid"),
        "{changed:?}"
    );
    assert!(
        changed.contains_key("project-registration-invalid"),
        "{changed:?}"
    );
    assert!(
        changed.contains_key("organization-registration-invalid"),
        "{changed:?}"
    );
    assert!(flips > 1000 && failed_open == 0);
}

#[test]
fn the_audit_chain_finds_an_edited_or_removed_event() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let key = kg.key(&["--org", "acme", "--name", "crm", "--all-projects"]);
    kg.ok(&["key", "disable", &key_id(&key)]);
    kg.ok(&["key", "delete", &key_id(&key), "--yes"]);
    let _ = p;
    let events = kg.json(&["audit"]);
    let events = events.as_array().unwrap();
    let delete = events.iter().find(|e| e["action"] == "key.delete").unwrap();
    assert_eq!(delete["detail"], "crm", "a delete names the key");
    assert!(
        events
            .iter()
            .skip(1)
            .all(|e| e["actor"].as_str().unwrap().starts_with("os user "))
    );
    assert_eq!(
        kg.ok(&["audit", "verify"]),
        format!("audit log verified: {} events chained\n", events.len())
    );

    // Edit one event's detail in place (a writer of the data directory).
    let edit = |seq: u64, f: &dyn Fn(&mut serde_json::Value)| {
        let db = open_sled(&kg.path().join("db"));
        let tree = db.open_tree("audit").unwrap();
        let k = seq.to_be_bytes();
        let v = tree.get(k).unwrap().unwrap();
        let mut j: serde_json::Value = serde_json::from_slice(&v[1..]).unwrap();
        f(&mut j);
        let mut nv = vec![v[0]];
        nv.extend(serde_json::to_vec(&j).unwrap());
        tree.insert(k, nv).unwrap();
        db.flush().unwrap();
    };
    let seq = delete["sequence"].as_u64().unwrap();
    edit(seq, &|j| j["detail"] = serde_json::json!("someone else"));
    let err = kg.fail(&["audit", "verify"]);
    assert!(
        err.contains(&format!("does not verify at event {seq}")),
        "{err}"
    );
    edit(seq, &|j| j["detail"] = serde_json::json!("crm"));
    kg.ok(&["audit", "verify"]);
    // Remove an event from the middle: the next one no longer links.
    let disable = events
        .iter()
        .find(|e| e["action"] == "key.disable")
        .unwrap()["sequence"]
        .as_u64()
        .unwrap();
    {
        let db = open_sled(&kg.path().join("db"));
        db.open_tree("audit")
            .unwrap()
            .remove(disable.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = kg.fail(&["audit", "verify"]);
    assert!(err.contains("does not verify at event "), "{err}");
}

/// The organization's listing (`keys_by_org`) is unsigned, so it is held
/// to one rule: a key it does not list is no live key. Removing an entry
/// can only deny the key, everywhere (verify, `key show`, snapshots), never
/// leave a working key out of its organization's listing; an entry added
/// under another organization, or one that names no key, lists nothing.
#[test]
fn a_key_taken_out_of_its_organization_s_listing_is_denied_everywhere() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    kg.org("globex");
    let hidden = kg.key(&["--org", "acme", "--name", "hidden", "--all-projects"]);
    let other = kg.key(&["--org", "acme", "--name", "other", "--all-projects"]);
    let id = key_id(&hidden);
    let entry = |org: &str, id: &str| [org.as_bytes(), b"\0", id.as_bytes()].concat();
    assert_eq!(kg.decide(&hidden, &p, &[]), "allow");
    with_tree(&kg, tree::KEYS_BY_ORG, |t| {
        t.remove(entry("acme", &id)).unwrap();
        // Planted: the key under another organization, and entries that
        // name no key.
        t.insert(entry("globex", &id), &[]).unwrap();
        t.insert(entry("acme", "not-a-key-id"), &[]).unwrap();
        t.insert(entry("acme", "AAAAAAAAAAA"), &[]).unwrap();
    });
    assert_eq!(kg.decide(&hidden, &p, &[]), "unknown key");
    assert_eq!(kg.decide(&other, &p, &[]), "allow");
    let ids = |org: &str| -> Vec<String> {
        kg.json(&["key", "list", "--org", org])
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("acme"), vec![key_id(&other)]);
    assert_eq!(ids("globex"), Vec::<String>::new());
    let shown = kg.json(&["key", "show", &id]);
    assert_eq!(
        (shown["status"].clone(), shown["inactive_reason"].clone()),
        ("inactive".into(), "unknown-key".into())
    );
    // A snapshot leaves it out, so validators fed by it deny it too.
    let file = kg.path().join("s.kgs");
    let info = kg.json(&["snapshot", "write", file.to_str().unwrap()]);
    assert_eq!(info["keys"], 1);
    let rt = keygate::Runtime::new().unwrap();
    let mut m = rt.instantiate().unwrap();
    let issuer = kg.json(&["issuer", "show"]);
    let v = m
        .validator(&[keygate::runtime::bindings::IssuerKey {
            id: issuer["issuer_key_id"].as_str().unwrap().to_string(),
            public_key: hex::decode(issuer["public_key"].as_str().unwrap()).unwrap(),
        }])
        .unwrap();
    m.validator_load_snapshot(v, &std::fs::read(&file).unwrap())
        .unwrap()
        .unwrap();
    let now = keygate::admin::now().unwrap();
    let ask = |m: &mut keygate::Module, key: &str| {
        m.validator_authorize(
            v,
            key,
            &p,
            keygate::runtime::bindings::Scope::TriggerWorkflows,
            now,
        )
        .unwrap()
    };
    assert_eq!(
        ask(&mut m, &hidden),
        keygate::runtime::bindings::Authorization::Deny(
            keygate::runtime::bindings::DenyReason::UnknownKey
        )
    );
    assert!(matches!(
        ask(&mut m, &other),
        keygate::runtime::bindings::Authorization::Allow(_)
    ));
    // An admin who acts on it by id puts it back in its listing.
    kg.ok(&["key", "disable", &id]);
    let mut listed = ids("acme");
    listed.sort();
    let mut want = vec![key_id(&hidden), key_id(&other)];
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(kg.decide(&hidden, &p, &[]), "key disabled");
}

/// Deleting a project or an organization does not rely on the unsigned
/// listing: a record taken out of it is found and deleted too (else it
/// would outlive its project, and come back with its listing entry and an
/// older registration).
#[test]
fn deletions_find_keys_taken_out_of_their_listing() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let own = kg.key(&["--project", &p, "--name", "own"]);
    let org_key = kg.key(&["--org", "acme", "--name", "org", "--all-projects"]);
    let unlist = |id: &str| {
        with_tree(&kg, tree::KEYS_BY_ORG, |t| {
            t.remove([b"acme\0".as_slice(), id.as_bytes()].concat())
                .unwrap();
        })
    };
    unlist(&key_id(&own));
    let deleted = kg.json(&["project", "delete", &p, "--yes"]);
    assert_eq!(deleted["deleted_keys"], serde_json::json!([key_id(&own)]));
    with_tree(&kg, tree::KEYS, |t| {
        assert!(t.get(key_id(&own)).unwrap().is_none());
    });
    // The organization: not empty while an unlisted record names it, and
    // the cascade deletes it.
    unlist(&key_id(&org_key));
    assert!(
        kg.fail(&["org", "delete", "acme", "--yes"])
            .contains("1 key"),
        "an unlisted key did not count"
    );
    let gone = kg.json(&["org", "delete", "acme", "--cascade", "--yes"]);
    assert_eq!(gone["deleted_keys"], serde_json::json!([key_id(&org_key)]));
    with_tree(&kg, tree::DELETED_KEYS, |t| {
        assert!(t.get(key_id(&org_key)).unwrap().is_some());
    });
    kg.ok(&["audit", "verify"]);
}

/// A key or project is an organization's only if it is not older than it,
/// which holds only while the clock does not run behind the store's writes:
/// an organization is not registered then.
#[test]
fn an_organization_is_not_registered_with_the_clock_behind_the_store() {
    let kg = Kg::new();
    kg.org("acme");
    with_tree(&kg, tree::AUDIT, |t| {
        let (k, v) = t.last().unwrap().unwrap();
        let mut e: serde_json::Value = serde_json::from_slice(&v[1..]).unwrap();
        e["at"] = (e["at"].as_u64().unwrap() + 3600).into();
        t.insert(k, [b"\x01".as_slice(), e.to_string().as_bytes()].concat())
            .unwrap();
    });
    let before = kg.store_dump();
    let err = kg.fail(&["org", "create", "globex"]);
    assert!(err.contains("before the store's last write"), "{err}");
    assert_eq!(kg.store_dump(), before);
}
