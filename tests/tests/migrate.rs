//! A store written by keygate 0.1 (schema 1: unsigned project registry and
//! deletions) or by keygate before organizations were signed (schema 2) is
//! refused until `keygate migrate` signs what it lacks; a schema-3 store
//! until it lists each organization's keys.

use keygate::schema::{self, tree};
use serde_json::{Value, json};

use crate::support::{Kg, key_id, open_sled};

/// Remove every trace of organizations a schema-3 keygate leaves: their
/// records, their recorded changes, their audit events, and the audit
/// chain (as a store written before the chain existed has none).
fn erase_organization_traces(db: &sled::Db) {
    db.drop_tree(tree::ORGANIZATIONS).unwrap();
    // Nor did an older store list keys under their organizations.
    db.drop_tree(tree::KEYS_BY_ORG).unwrap();
    let changes = db.open_tree(tree::CHANGES).unwrap();
    for item in changes.scan_prefix([schema::change::ORGANIZATION]) {
        changes.remove(item.unwrap().0).unwrap();
    }
    let audit = db.open_tree(tree::AUDIT).unwrap();
    for item in audit.iter() {
        let (k, v) = item.unwrap();
        let mut e: serde_json::Value = serde_json::from_slice(&v[1..]).unwrap();
        if e["action"].as_str().unwrap().starts_with("org.") {
            audit.remove(k).unwrap();
            continue;
        }
        e["chain"] = serde_json::Value::Null;
        audit
            .insert(k, [b"\x01".as_slice(), e.to_string().as_bytes()].concat())
            .unwrap();
    }
}

/// Rewrite a current store the way schema 2 laid it out: no organization
/// records, schema 2, no lock file. With `faithful`, every other trace of
/// organizations goes too, as in a store a schema-2 keygate wrote.
fn downgrade_to_schema_2(kg: &Kg, faithful: bool) {
    let db = open_sled(&kg.path().join("db"));
    if faithful {
        erase_organization_traces(&db);
    } else {
        db.drop_tree(tree::ORGANIZATIONS).unwrap();
    }
    let meta = db.open_tree(tree::META).unwrap();
    meta.insert(schema::meta::SCHEMA, &2u32.to_be_bytes())
        .unwrap();
    db.flush().unwrap();
    drop(db);
    std::fs::remove_file(kg.path().join("keygate.lock")).unwrap();
}

/// Rewrite a current store the way keygate 0.1 laid it out: key records as
/// they are (their format did not change), projects and deleted keys as
/// `1` + JSON, no organization records, schema 1, no lock file.
fn downgrade_to_schema_1(kg: &Kg) {
    let db = open_sled(&kg.path().join("db"));
    erase_organization_traces(&db);
    let projects = db.open_tree(tree::PROJECTS).unwrap();
    for item in projects.iter() {
        let (k, v) = item.unwrap();
        let signed = schema::decode_signed(&v).unwrap();
        let p = keygate_policy::ProjectRegistration::decode(&signed.canonical).unwrap();
        let v1 = json!({"id": p.id, "organization": p.organization, "name": p.name,
            "created_at": p.created_at, "deleted_at": p.deleted_at});
        projects
            .insert(k, [b"\x01".as_slice(), v1.to_string().as_bytes()].concat())
            .unwrap();
    }
    let deleted = db.open_tree(tree::DELETED_KEYS).unwrap();
    for item in deleted.iter() {
        let (k, v) = item.unwrap();
        let signed = schema::decode_signed(&v).unwrap();
        let t = keygate_policy::Tombstone::decode(&signed.canonical).unwrap();
        let v1 = json!({"id": t.id, "organization": t.organization.unwrap_or_default(),
            "deleted_at": t.deleted_at, "last_version": t.last_version});
        deleted
            .insert(k, [b"\x01".as_slice(), v1.to_string().as_bytes()].concat())
            .unwrap();
    }
    let meta = db.open_tree(tree::META).unwrap();
    meta.insert(schema::meta::SCHEMA, &1u32.to_be_bytes())
        .unwrap();
    db.flush().unwrap();
    drop(db);
    std::fs::remove_file(kg.path().join("keygate.lock")).unwrap();
}

#[test]
fn a_schema_1_store_is_refused_until_migrated_then_decides_the_same() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let q = kg.project("acme", "Q");
    let g = kg.project("globex", "G");
    let gone = kg.project("acme", "Gone");
    let all = kg.key(&["--org", "acme", "--name", "all", "--all-projects"]);
    let sel = kg.key(&["--org", "acme", "--name", "sel", "--projects", &q]);
    let dead_key = kg.key(&["--org", "acme", "--name", "dead", "--all-projects"]);
    let proj = kg.key(&["--project", &gone, "--name", "proj"]);
    kg.ok(&["key", "delete", &key_id(&dead_key), "--yes"]);
    kg.ok(&["project", "delete", &gone, "--yes"]);
    let keys = [&all, &sel, &dead_key, &proj];
    let projects = [&p, &q, &g, &gone];
    let decide_all = || {
        keys.iter()
            .flat_map(|k| projects.iter().map(move |p| (*k, *p)))
            .map(|(k, p)| kg.decide(k, p, &[]))
            .collect::<Vec<_>>()
    };
    let before = decide_all();
    assert_eq!(
        before.iter().filter(|d| *d == "allow").count(),
        3,
        "{before:?}"
    );

    downgrade_to_schema_1(&kg);
    let err = kg.fail(&["key", "list", "--org", "acme"]);
    assert_eq!(
        err,
        format!(
            "error: the keygate store at `{}` has schema version 1 (an older keygate); it must be migrated to version 4 before use (review with `keygate migrate`, then `keygate migrate --yes`)\n",
            kg.path().display()
        )
    );
    let (code, _, err) = kg.verify(all.as_bytes(), &p, &[]);
    assert_eq!(code, 2, "{err}");

    // Without --yes: what would be signed, and nothing changes.
    let dump = kg.store_dump();
    let plan = kg.json(&["migrate"]);
    assert_eq!(
        (plan["from_schema"].clone(), plan["applied"].clone()),
        (json!(1), json!(false))
    );
    assert_eq!(plan["organizations"], json!(["acme", "globex"]));
    let regs = plan["project_registrations"].as_array().unwrap();
    assert_eq!(regs.len(), 4);
    assert_eq!(
        regs.iter().filter(|r| !r["deleted_at"].is_null()).count(),
        1
    );
    let mut dead: Vec<&str> = plan["key_tombstones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    dead.sort();
    let mut expected = vec![key_id(&dead_key), key_id(&proj)];
    expected.sort();
    assert_eq!(dead, expected);
    let human = kg.run(&["migrate"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("ORGANIZATION") && text.contains(&g) && text.contains("globex"));
    assert!(String::from_utf8_lossy(&human.stderr).contains("migrate --yes"));
    kg.run(&["key", "list", "--org", "acme"]); // refused, and the lock file comes back
    let mut after = kg.store_dump();
    after[0] = dump[0].clone(); // the top-level names: keygate.lock again
    assert!(after == dump, "a dry run changed the store");

    let m = kg.json(&["migrate", "--yes"]);
    assert_eq!(m["applied"], true);
    assert_eq!(m["project_registrations"].as_array().unwrap().len(), 4);
    assert_eq!(decide_all(), before);
    let audit = kg.json(&["audit"]);
    let last = audit.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "store.migrate");
    // Every fact is signed now: a moved registration is caught again.
    let again = kg.ok(&["migrate"]);
    assert!(again.contains("already at schema 4"), "{again}");
    let dump = kg.store_dump();
    let projects_tree = dump.iter().find(|(n, _)| n == tree::PROJECTS).unwrap();
    for (_, v) in &projects_tree.1 {
        let signed = schema::decode_signed(v).unwrap();
        assert_eq!(&signed.canonical[..3], b"KGP");
    }
}

#[test]
fn a_schema_2_store_gets_its_organizations_registered_as_they_were_named() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let g = kg.project("globex", "G");
    let all = kg.key(&["--org", "acme", "--name", "all", "--all-projects"]);
    let gk = kg.key(&["--org", "globex", "--name", "g", "--all-projects"]);
    let before: Vec<String> = [(&all, &p), (&all, &g), (&gk, &g), (&gk, &p)]
        .iter()
        .map(|(k, p)| kg.decide(k, p, &[]))
        .collect();
    assert_eq!(
        before,
        ["allow", "wrong organization", "allow", "wrong organization"]
    );

    downgrade_to_schema_2(&kg, true);
    let err = kg.fail(&["key", "list", "--org", "acme"]);
    assert!(
        err.contains("has schema version 2 (an older keygate); it must be migrated to version 4"),
        "{err}"
    );
    let plan = kg.json(&["migrate"]);
    assert_eq!(
        (
            plan["from_schema"].clone(),
            plan["applied"].clone(),
            plan["organizations"].clone()
        ),
        (json!(2), json!(false), json!(["acme", "globex"]))
    );
    assert_eq!(plan["project_registrations"], json!([]));
    let human = kg.run(&["migrate"]);
    assert!(
        String::from_utf8_lossy(&human.stdout)
            .contains("organizations to register (2, no key policy): acme, globex")
    );
    assert!(String::from_utf8_lossy(&human.stderr).contains("its organizations are only names"));
    let m = kg.json(&["migrate", "--yes"]);
    assert_eq!(m["applied"], true);
    let after: Vec<String> = [(&all, &p), (&all, &g), (&gk, &g), (&gk, &p)]
        .iter()
        .map(|(k, p)| kg.decide(k, p, &[]))
        .collect();
    assert_eq!(after, before);
    let acme = kg.json(&["org", "show", "acme"]);
    assert_eq!(
        (
            acme["name"].clone(),
            acme["key_policy"].clone(),
            acme["keys"].clone()
        ),
        (
            json!("acme"),
            json!({"require_expiry": false, "max_expiry_days": null}),
            json!(1)
        )
    );
    assert!(kg.ok(&["migrate"]).contains("already at schema 4"));
}

/// The attack a schema number invites: lower it on a current store and
/// remove an organization's record, so that migration registers it again
/// without its key policy. Every trace a current store keeps refuses it.
#[test]
fn a_current_store_made_to_look_older_is_not_migrated() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let never = kg.key(&["--org", "acme", "--name", "forever", "--all-projects"]);
    kg.ok(&["org", "policy", "set", "acme", "--require-expiry"]);
    let denied = "key lifetime exceeds the organization's key policy";
    assert_eq!(kg.decide(&never, &p, &[]), denied);
    downgrade_to_schema_2(&kg, false);
    let err = kg.fail(&["migrate", "--yes"]);
    assert!(
        err.contains("it says schema 2, but it records changes of organizations, which only a keygate of schema 3 or later writes"),
        "{err}"
    );
    // Its recorded changes removed too: the audit log still names them.
    {
        let db = open_sled(&kg.path().join("db"));
        let changes = db.open_tree(tree::CHANGES).unwrap();
        for item in changes.scan_prefix([schema::change::ORGANIZATION]) {
            changes.remove(item.unwrap().0).unwrap();
        }
        db.flush().unwrap();
    }
    let err = kg.fail(&["migrate", "--yes"]);
    assert!(err.contains("its audit log records organizations"), "{err}");
    // The organization's events removed as well: the chain breaks there.
    {
        let db = open_sled(&kg.path().join("db"));
        let audit = db.open_tree(tree::AUDIT).unwrap();
        for item in audit.iter() {
            let (k, v) = item.unwrap();
            let e: serde_json::Value = serde_json::from_slice(&v[1..]).unwrap();
            if e["action"].as_str().unwrap().starts_with("org.") {
                audit.remove(k).unwrap();
            }
        }
        db.flush().unwrap();
    }
    let err = kg.fail(&["migrate", "--yes"]);
    assert!(
        err.contains("its audit log does not verify at event"),
        "{err}"
    );
    // Nothing was signed: the key is still not allowed.
    assert_eq!(kg.run(&["migrate"]).status.code(), Some(2));
    assert!(kg.run(&["key", "list", "--org", "acme"]).status.code() == Some(2));
}

/// Schema 3 stores had no listing of each organization's keys: migration
/// lists every key whose record verifies (nothing is signed), and until
/// then the store is refused.
#[test]
fn a_schema_3_store_gets_its_keys_listed_under_their_organizations() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let all = kg.key(&["--org", "acme", "--name", "all", "--all-projects"]);
    let gone = kg.key(&["--org", "acme", "--name", "gone", "--all-projects"]);
    let gk = kg.key(&["--org", "globex", "--name", "g", "--all-projects"]);
    kg.ok(&["key", "delete", &key_id(&gone), "--yes"]);
    {
        let db = open_sled(&kg.path().join("db"));
        db.drop_tree(tree::KEYS_BY_ORG).unwrap();
        db.open_tree(tree::META)
            .unwrap()
            .insert(schema::meta::SCHEMA, &3u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    std::fs::remove_file(kg.path().join("keygate.lock")).unwrap();
    let err = kg.fail(&["key", "list", "--org", "acme"]);
    assert!(
        err.contains("has schema version 3 (an older keygate); it must be migrated to version 4"),
        "{err}"
    );
    let plan = kg.run(&["migrate"]);
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("keys to list under their organization: 2"),
        "{plan:?}"
    );
    assert!(String::from_utf8_lossy(&plan.stderr).contains("do not list their keys yet"));
    let m = kg.json(&["migrate", "--yes"]);
    assert_eq!(
        (m["from_schema"].clone(), m["listed_keys"].clone()),
        (json!(3), json!(2))
    );
    assert_eq!(kg.decide(&all, &p, &[]), "allow");
    assert_eq!(kg.decide(&gone, &p, &[]), "unknown key");
    assert_eq!(kg.decide(&gk, &p, &[]), "wrong organization");
    let listed: Vec<Value> = kg
        .json(&["key", "list", "--org", "acme"])
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].clone())
        .collect();
    assert_eq!(listed, vec![json!(key_id(&all))]);
    assert!(kg.ok(&["migrate"]).contains("already at schema 4"));
    kg.ok(&["audit", "verify"]);
}
