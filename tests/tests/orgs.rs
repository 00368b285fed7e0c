//! Organizations as signed records with a key policy: the CLI commands, the
//! policy at creation, rotation and use, deletes, and what a writer of the
//! data directory can do to them.

use keygate::schema::tree;
use serde_json::json;

use crate::support::{Kg, key_id, open_sled};

fn tree_get(kg: &Kg, name: &str, id: &str) -> Option<Vec<u8>> {
    let db = open_sled(&kg.path().join("db"));
    db.open_tree(name)
        .unwrap()
        .get(id)
        .unwrap()
        .map(|v| v.to_vec())
}

fn tree_set(kg: &Kg, name: &str, id: &str, value: Option<&[u8]>) {
    let db = open_sled(&kg.path().join("db"));
    let t = db.open_tree(name).unwrap();
    match value {
        Some(v) => t.insert(id, v).unwrap(),
        None => t.remove(id).unwrap(),
    };
    db.flush().unwrap();
}

#[test]
fn organizations_are_created_listed_shown_and_checked_everywhere() {
    let kg = Kg::new();
    assert_eq!(
        kg.ok(&["org", "create", "acme", "--name", "Acme Corp"]),
        "acme\n"
    );
    kg.ok(&["org", "create", "globex"]);
    assert_eq!(
        kg.fail(&["org", "create", "acme"]),
        "error: organization `acme` already exists\n"
    );
    assert_eq!(
        kg.fail(&["org", "create", "Acme"]),
        "error: organization must be 1 to 63 lowercase letters, digits or dashes, not starting or ending with a dash\n"
    );
    assert_eq!(
        kg.fail(&["org", "create", "initech", "--name", "   "]),
        "error: name is empty\n"
    );
    let list = kg.json(&["org", "list"]);
    let slugs: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["acme", "globex"]);
    assert_eq!(list[0]["name"], "Acme Corp");
    assert_eq!(
        list[0]["key_policy"],
        json!({"require_expiry": false, "max_expiry_days": null})
    );
    assert!(list[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let table = kg.ok(&["org", "list"]);
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["SLUG", "NAME", "KEY", "POLICY", "CREATED"]
    );

    // Keys and projects only in an existing organization, with the nearest
    // live slug for a typo.
    assert_eq!(
        kg.fail(&["project", "create", "--org", "acmee", "P"]),
        "error: unknown organization `acmee` (did you mean `acme`?)\n"
    );
    assert_eq!(
        kg.fail(&[
            "key",
            "create",
            "--org",
            "globx",
            "--name",
            "k",
            "--all-projects",
            "--expires",
            "never"
        ]),
        "error: unknown organization `globx` (did you mean `globex`?)\n"
    );
    assert_eq!(
        kg.fail(&["key", "list", "--org", "nosuch"]),
        "error: unknown organization `nosuch`\n"
    );
    assert_eq!(
        kg.fail(&["org", "show", "nosuch"]),
        "error: unknown organization `nosuch`\n"
    );
    let p = kg.project("acme", "billing");
    kg.key(&["--org", "acme", "--name", "crm", "--all-projects"]);
    kg.key(&["--project", &p, "--name", "pk"]);
    let shown = kg.json(&["org", "show", "acme"]);
    assert_eq!(
        (
            shown["projects"].clone(),
            shown["keys"].clone(),
            shown["keys_outside_policy"].clone()
        ),
        (json!(1), json!(2), json!([]))
    );
    let text = kg.ok(&["org", "show", "acme"]);
    assert!(text.contains("name:         Acme Corp\n"), "{text}");
    assert!(text.contains("key policy:   expiry optional\n"), "{text}");
    assert!(text.contains("denied by the key policy: none\n"), "{text}");
}

#[test]
fn the_key_policy_holds_at_creation_at_rotation_and_at_use() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let d30 = kg.key(&[
        "--org",
        "acme",
        "--name",
        "thirty",
        "--all-projects",
        "--expires",
        "30d",
    ]);
    let never = kg.key(&["--org", "acme", "--name", "forever", "--all-projects"]);
    let d7 = kg.key(&[
        "--org",
        "acme",
        "--name",
        "seven",
        "--all-projects",
        "--expires",
        "7d",
    ]);
    for k in [&d30, &never, &d7] {
        assert_eq!(kg.decide(k, &p, &[]), "allow");
    }
    // Tightening names the keys it now denies.
    let o = kg.run(&["org", "policy", "set", "acme", "--max-expiry", "14d"]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "organization acme: key policy is now expiry at most 14 days\n"
    );
    let mut outside = vec![key_id(&d30), key_id(&never)];
    outside.sort();
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "warning: 2 keys of acme break this policy and are denied from now on (lifetime-exceeds-policy): {}\n",
            outside.join(", ")
        )
    );
    assert_eq!(
        kg.decide(&d30, &p, &[]),
        "key lifetime exceeds the organization's key policy"
    );
    assert_eq!(
        kg.decide(&never, &p, &[]),
        "key lifetime exceeds the organization's key policy"
    );
    assert_eq!(kg.decide(&d7, &p, &[]), "allow");
    let (code, out, _) = kg.verify(d30.as_bytes(), &p, &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (code, v["reason"].clone(), v["class"].clone()),
        (1, json!("lifetime-exceeds-policy"), json!("forbidden"))
    );
    // Expired is still said first.
    assert_eq!(kg.decide(&d30, &p, &["--at", "+31d"]), "key expired");
    assert_eq!(
        kg.json(&["org", "show", "acme"])["keys_outside_policy"],
        json!(outside)
    );
    // Listings say so too, as verify does.
    let shown = kg.json(&["key", "show", &key_id(&never)]);
    assert_eq!(
        (shown["status"].clone(), shown["inactive_reason"].clone()),
        (json!("inactive"), json!("lifetime-exceeds-policy"))
    );
    let active: Vec<String> = kg
        .json(&["key", "list", "--org", "acme", "--status", "active"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(active, [key_id(&d7)]);
    let table = kg.ok(&["key", "list", "--org", "acme"]);
    assert_eq!(table.matches("outside policy").count(), 2, "{table}");
    kg.ok(&["key", "disable", &key_id(&never)]);
    let o = kg.run(&["key", "enable", &key_id(&never)]);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "note: key {} breaks its organization's key policy (lifetime-exceeds-policy): it does not validate whatever its switch says; rotate it with a shorter --expires\n",
            key_id(&never)
        )
    );

    // Creation refuses what breaks it, with the component's message.
    let before = kg.store_dump();
    assert_eq!(
        kg.fail(&[
            "key",
            "create",
            "--org",
            "acme",
            "--name",
            "x",
            "--all-projects",
            "--expires",
            "30d"
        ]),
        "error: the organization's key policy allows keys of at most 14 days\n"
    );
    assert_eq!(
        kg.fail(&[
            "key",
            "create",
            "--org",
            "acme",
            "--name",
            "x",
            "--all-projects",
            "--expires",
            "never"
        ]),
        "error: the organization's key policy requires an expiry\n"
    );
    assert_eq!(
        kg.fail(&[
            "key",
            "create",
            "--project",
            &p,
            "--name",
            "x",
            "--expires",
            "15d"
        ]),
        "error: the organization's key policy allows keys of at most 14 days\n"
    );
    // Rotation makes a key with the old one's expiry: refused too.
    assert_eq!(
        kg.fail(&["key", "rotate", &key_id(&d30)]),
        "error: the organization's key policy allows keys of at most 14 days\n"
    );
    assert!(
        kg.store_dump() == before,
        "a refused write changed the store"
    );
    kg.key(&[
        "--org",
        "acme",
        "--name",
        "ok",
        "--all-projects",
        "--expires",
        "14d",
    ]);
    let rotated = kg.ok(&["key", "rotate", &key_id(&d7)]);
    assert_eq!(kg.decide(rotated.trim(), &p, &[]), "allow");

    // Policy bounds, a missing rule, and setting the same policy again.
    assert_eq!(
        kg.fail(&["org", "policy", "set", "acme", "--max-expiry", "91d"]),
        "error: a key policy's maximum expiry of 91 days is outside 7 to 90 days\n"
    );
    assert_eq!(
        kg.fail(&["org", "policy", "set", "acme", "--max-expiry", "30x"]),
        "error: `30x` is not a maximum expiry: use 7d to 90d\n"
    );
    let o = kg.run(&["org", "policy", "set", "acme"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        kg.ok(&["org", "policy", "set", "acme", "--max-expiry", "14"]),
        "organization acme: key policy was already expiry at most 14 days\n"
    );
    // --require-expiry lets the 30-day key in again, not the eternal one.
    kg.ok(&["org", "policy", "set", "acme", "--require-expiry"]);
    assert_eq!(kg.decide(&d30, &p, &[]), "allow");
    assert_eq!(
        kg.decide(&never, &p, &[]),
        "key lifetime exceeds the organization's key policy"
    );
    kg.ok(&[
        "org",
        "policy",
        "set",
        "acme",
        "--expiry-optional",
        "--name",
        "Acme",
    ]);
    assert_eq!(kg.decide(&never, &p, &[]), "allow");
    assert_eq!(kg.json(&["org", "show", "acme"])["name"], "Acme");
    // Rotating with a shorter expiry brings a key back within the policy.
    kg.ok(&["org", "policy", "set", "acme", "--max-expiry", "14d"]);
    assert_eq!(
        kg.decide(&d30, &p, &[]),
        "key lifetime exceeds the organization's key policy"
    );
    let back = kg.ok(&["key", "rotate", &key_id(&d30), "--expires", "14d"]);
    assert_eq!(kg.decide(back.trim(), &p, &[]), "allow");
    assert_eq!(
        kg.json(&["key", "show", &key_id(back.trim())])["expiry_policy"],
        "14d"
    );
    let actions: Vec<String> = kg
        .json(&["audit", "--org", "acme", "--action", "org.policy"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        [
            "expiry at most 14 days",
            "expiry required",
            "expiry optional",
            "expiry at most 14 days"
        ]
    );
}

#[test]
fn deleting_an_organization_names_what_goes_and_ends_it_for_good() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let q = kg.project("acme", "web");
    let k = kg.key(&["--org", "acme", "--name", "crm", "--all-projects"]);
    let pk = kg.key(&["--project", &q, "--name", "web-only"]);
    kg.org("empty");
    // A registration that does not verify may be acme's: no cascade
    // deletes around it.
    let good = tree_get(&kg, tree::PROJECTS, &q).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 20;
    bad[last] ^= 1;
    tree_set(&kg, tree::PROJECTS, &q, Some(&bad));
    let err = kg.fail(&["org", "delete", "acme", "--cascade", "--yes"]);
    assert!(
        err.contains(&format!(
            "the stored project registration `{q}` failed signature verification"
        )),
        "{err}"
    );
    tree_set(&kg, tree::PROJECTS, &q, Some(&good));
    let before = kg.store_dump();
    assert_eq!(
        kg.fail(&["org", "delete", "acme", "--yes"]),
        "error: organization `acme` still has 2 projects and 2 keys: delete them first, or add --cascade to delete them with it\n"
    );
    assert_eq!(
        kg.fail(&["org", "delete", "acme", "--cascade"]),
        "error: this would delete organization acme (acme) with its 2 projects and 2 keys, which cannot be undone: add --yes to confirm (there is no terminal to ask on)\n"
    );
    assert!(kg.store_dump() == before);
    assert_eq!(
        kg.ok(&["org", "delete", "empty", "--yes"]),
        "deleted organization empty (empty) with 0 projects and 0 keys\n"
    );
    let d = kg.json(&["org", "delete", "acme", "--cascade", "--yes"]);
    let mut projects: Vec<&str> = d["deleted_projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    projects.sort();
    let mut expect = vec![p.as_str(), q.as_str()];
    expect.sort();
    assert_eq!(projects, expect);
    assert_eq!(d["deleted_keys"].as_array().unwrap().len(), 2);
    assert!(d["deleted_organization"]["deleted_at"].is_string());
    assert_eq!(kg.decide(&k, &p, &[]), "unknown key");
    assert_eq!(kg.decide(&pk, &q, &[]), "unknown key");
    // The slug stays taken; nothing can be made in it.
    assert_eq!(
        kg.fail(&["org", "create", "acme"]),
        "error: organization `acme` was deleted; its slug is not used again\n"
    );
    assert_eq!(
        kg.fail(&["project", "create", "--org", "acme", "x"]),
        "error: organization `acme` was deleted; its slug is not used again\n"
    );
    assert_eq!(kg.json(&["org", "list"]), json!([]));
    let shown = kg.json(&["org", "show", "acme"]);
    assert!(shown["deleted_at"].is_string() && shown["keys"].is_null());
    // The audit names each key with its name, after the organization.
    let events = kg.json(&["audit", "--org", "acme"]);
    let tail: Vec<(String, String)> = events.as_array().unwrap()
        [events.as_array().unwrap().len() - 5..]
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        tail[0],
        ("org.delete".into(), "2 projects and 2 keys deleted".into())
    );
    assert!(tail.contains(&(
        "key.delete".into(),
        "crm (key, with organization acme)".into()
    )));
    assert!(tail.contains(&(
        "key.delete".into(),
        "web-only (project key, with organization acme)".into()
    )));
    assert_eq!(
        kg.ok(&["audit", "verify"]).split(':').next().unwrap(),
        "audit log verified"
    );
}

#[test]
fn a_writer_of_the_data_directory_cannot_loosen_or_remove_an_organization() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let never = kg.key(&["--org", "acme", "--name", "forever", "--all-projects"]);
    let loose = tree_get(&kg, tree::ORGANIZATIONS, "acme").unwrap();
    kg.ok(&["org", "policy", "set", "acme", "--require-expiry"]);
    let strict = tree_get(&kg, tree::ORGANIZATIONS, "acme").unwrap();
    let denied = "key lifetime exceeds the organization's key policy";
    assert_eq!(kg.decide(&never, &p, &[]), denied);

    // Removing the record: no organization, no allow.
    tree_set(&kg, tree::ORGANIZATIONS, "acme", None);
    assert_eq!(kg.decide(&never, &p, &[]), "unknown organization");
    // Planting another organization's record under the slug.
    kg.org("globex");
    let globex = tree_get(&kg, tree::ORGANIZATIONS, "globex").unwrap();
    tree_set(&kg, tree::ORGANIZATIONS, "acme", Some(&globex));
    assert_eq!(
        kg.decide(&never, &p, &[]),
        "organization registration invalid"
    );
    // Editing the signed bytes: the policy tag changed to "optional".
    let mut edited = strict.clone();
    let tag = edited.iter().rposition(|b| *b == 1).unwrap();
    edited[tag] = 0;
    tree_set(&kg, tree::ORGANIZATIONS, "acme", Some(&edited));
    let got = kg.decide(&never, &p, &[]);
    assert_ne!(got, "allow");
    // Listing and snapshots refuse to trust it, and say so.
    tree_set(&kg, tree::ORGANIZATIONS, "acme", Some(&globex));
    let err = kg.fail(&["org", "show", "acme"]);
    assert!(
        err.contains("the stored organization `acme` failed signature verification"),
        "{err}"
    );
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("s.kgs");
    let err = kg.fail(&["snapshot", "write", file.to_str().unwrap()]);
    assert!(err.contains("organization `acme`"), "{err}");
    assert!(!file.exists());
    // Back as it was: denied by the policy again.
    tree_set(&kg, tree::ORGANIZATIONS, "acme", Some(&strict));
    assert_eq!(kg.decide(&never, &p, &[]), denied);
    // Removed, then registered again to shed its policy: refused, since
    // the store still names it.
    tree_set(&kg, tree::ORGANIZATIONS, "acme", None);
    assert_eq!(
        kg.fail(&["org", "create", "acme"]),
        "error: organization `acme` has no record, but the store names it (a recorded change): its record was removed from the data directory; restore the store from a backup (a slug is never registered twice)\n"
    );
    assert_eq!(kg.decide(&never, &p, &[]), "unknown organization");
    tree_set(&kg, tree::ORGANIZATIONS, "acme", Some(&strict));
    // The one thing a store alone cannot see: its own older, genuinely
    // signed record put back (a rollback of one fact). Validators fed by
    // sequenced snapshots refuse that; the README says so.
    tree_set(&kg, tree::ORGANIZATIONS, "acme", Some(&loose));
    assert_eq!(kg.decide(&never, &p, &[]), "allow");
}

#[test]
fn snapshots_carry_organizations_and_their_policy_to_validators() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let never = kg.key(&["--org", "acme", "--name", "forever", "--all-projects"]);
    let out = tempfile::tempdir().unwrap();
    let full = out.path().join("full.kgs");
    let delta = out.path().join("delta.kgs");
    let inspect = |f: &std::path::Path| kg.json(&["snapshot", "inspect", f.to_str().unwrap()]);
    kg.ok(&["snapshot", "write", full.to_str().unwrap()]);
    let info = inspect(&full);
    assert_eq!(
        (
            info["organizations"].clone(),
            info["keys"].clone(),
            info["projects"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
    let seq = info["sequence"].as_u64().unwrap();
    kg.ok(&["org", "policy", "set", "acme", "--require-expiry"]);
    kg.ok(&[
        "snapshot",
        "write",
        delta.to_str().unwrap(),
        "--since",
        &seq.to_string(),
    ]);
    let d = inspect(&delta);
    assert_eq!(
        (
            d["base"].clone(),
            d["organizations"].clone(),
            d["keys"].clone()
        ),
        (json!(seq), json!(1), json!(0))
    );
    // The change index is not trusted to leave a change out: an entry
    // lowered below the base (with a made-up tag, its old tag, or none)
    // still puts the organization in the delta.
    let key = [&[4u8][..], b"acme"].concat();
    let genuine = {
        let db = open_sled(&kg.path().join("db"));
        let v = db
            .open_tree(tree::CHANGES)
            .unwrap()
            .get(&key)
            .unwrap()
            .unwrap();
        v.to_vec()
    };
    assert_eq!(genuine.len(), 40);
    for forged in [
        [&1u64.to_be_bytes()[..], &[0u8; 32][..]].concat(),
        [&1u64.to_be_bytes()[..], &genuine[8..]].concat(),
        1u64.to_be_bytes().to_vec(),
    ] {
        {
            let db = open_sled(&kg.path().join("db"));
            db.open_tree(tree::CHANGES)
                .unwrap()
                .insert(&key, forged)
                .unwrap();
            db.flush().unwrap();
        }
        let again = out.path().join("again.kgs");
        kg.ok(&[
            "snapshot",
            "write",
            again.to_str().unwrap(),
            "--since",
            &seq.to_string(),
        ]);
        assert_eq!(inspect(&again)["organizations"], json!(1));
    }
    {
        let db = open_sled(&kg.path().join("db"));
        db.open_tree(tree::CHANGES)
            .unwrap()
            .insert(&key, genuine)
            .unwrap();
        db.flush().unwrap();
    }
    // A validator: the full snapshot allows, the delta brings the policy.
    let mut m = keygate::runtime::Runtime::new()
        .unwrap()
        .instantiate()
        .unwrap();
    let issuer: keygate::runtime::bindings::IssuerKey = {
        let v = kg.json(&["issuer", "show"]);
        keygate::runtime::bindings::IssuerKey {
            id: v["issuer_key_id"].as_str().unwrap().into(),
            public_key: hex::decode(v["public_key"].as_str().unwrap()).unwrap(),
        }
    };
    let val = m.validator(&[issuer]).unwrap();
    m.validator_load_snapshot(val, &std::fs::read(&full).unwrap())
        .unwrap()
        .unwrap();
    let now = keygate::admin::now().unwrap();
    let ask = |m: &mut keygate::runtime::Module| {
        m.validator_authorize(
            val,
            &never,
            &p,
            keygate::runtime::bindings::Scope::TriggerWorkflows,
            now,
        )
        .unwrap()
    };
    assert!(matches!(
        ask(&mut m),
        keygate::runtime::bindings::Authorization::Allow(_)
    ));
    m.validator_load_snapshot(val, &std::fs::read(&delta).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        ask(&mut m),
        keygate::runtime::bindings::Authorization::Deny(
            keygate::runtime::bindings::DenyReason::LifetimeExceedsPolicy
        )
    );
}

/// The slug-reuse attack with every trace hidden while the operator
/// innocently registers the slug again: the record removed, its change
/// entry removed, its audit events stripped of it, its keys and projects
/// taken out and put back afterwards. The new organization is not the old
/// one: what was made before it is denied.
#[test]
fn facts_older_than_their_organization_are_not_its_own() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let never = kg.key(&["--org", "acme", "--name", "forever", "--all-projects"]);
    kg.ok(&["org", "policy", "set", "acme", "--require-expiry"]);
    let denied = "key lifetime exceeds the organization's key policy";
    assert_eq!(kg.decide(&never, &p, &[]), denied);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Hide every trace.
    let (key_value, project_value) = (
        tree_get(&kg, tree::KEYS, &key_id(&never)).unwrap(),
        tree_get(&kg, tree::PROJECTS, &p).unwrap(),
    );
    let listed =
        String::from_utf8([b"acme\0".as_slice(), key_id(&never).as_bytes()].concat()).unwrap();
    tree_set(&kg, tree::ORGANIZATIONS, "acme", None);
    tree_set(&kg, tree::KEYS, &key_id(&never), None);
    tree_set(&kg, tree::KEYS_BY_ORG, &listed, None);
    tree_set(&kg, tree::PROJECTS, &p, None);
    {
        let db = open_sled(&kg.path().join("db"));
        let changes = db.open_tree(tree::CHANGES).unwrap();
        for item in changes.iter() {
            let (k, _) = item.unwrap();
            if k.ends_with(b"acme") {
                changes.remove(k).unwrap();
            }
        }
        let audit = db.open_tree(tree::AUDIT).unwrap();
        for item in audit.iter() {
            let (k, v) = item.unwrap();
            let mut e: serde_json::Value = serde_json::from_slice(&v[1..]).unwrap();
            e["organization"] = serde_json::Value::Null;
            audit
                .insert(k, [b"\x01".as_slice(), e.to_string().as_bytes()].concat())
                .unwrap();
        }
        db.flush().unwrap();
    }
    kg.ok(&["org", "create", "acme"]);
    tree_set(&kg, tree::KEYS, &key_id(&never), Some(&key_value));
    tree_set(&kg, tree::KEYS_BY_ORG, &listed, Some(&[]));
    tree_set(&kg, tree::PROJECTS, &p, Some(&project_value));
    // Not allowed: the key (and the project) predate this organization.
    assert_eq!(
        kg.decide(&never, &p, &[]),
        "key or project older than its organization"
    );
    assert_eq!(
        kg.json(&["key", "show", &key_id(&never)])["inactive_reason"],
        "predates-organization"
    );
    assert_eq!(kg.json(&["project", "list", "--org", "acme"]), json!([]));
    // A project of the new organization does not take the old key either.
    let fresh = kg.project("acme", "fresh");
    assert_eq!(
        kg.decide(&never, &fresh, &[]),
        "key or project older than its organization"
    );
}
