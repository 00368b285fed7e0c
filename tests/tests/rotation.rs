//! Rotation: new secret, same settings, the old key valid only within the grace.

use crate::support::{Kg, key_id};

#[test]
fn rotation_keeps_the_old_key_only_for_the_grace_period() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let q = kg.project("acme", "Q");
    let old = kg.key(&[
        "--org",
        "acme",
        "--name",
        "crm",
        "--projects",
        &p,
        "--expires",
        "90d",
    ]);
    let new = kg
        .ok(&["key", "rotate", &key_id(&old), "--grace", "1h"])
        .trim_end()
        .to_string();
    assert_ne!(new, old);
    assert_eq!(kg.decide(&new, &p, &[]), "allow");
    assert_eq!(
        kg.decide(&new, &q, &[]),
        "project not granted",
        "same settings: same projects"
    );
    assert_eq!(kg.decide(&old, &p, &[]), "allow");
    assert_eq!(kg.decide(&old, &p, &["--at", "+59m"]), "allow");
    assert_eq!(kg.decide(&old, &p, &["--at", "+61m"]), "key expired");
    assert_eq!(kg.decide(&new, &p, &["--at", "+61m"]), "allow");

    let n = kg.json(&["key", "show", &key_id(&new)]);
    assert_eq!(n["name"], "crm");
    assert_eq!(n["expiry_policy"], "90d");
    assert_eq!(n["rotated_from"], key_id(&old).as_str());
    let o = kg.json(&["key", "show", &key_id(&old)]);
    assert_eq!(o["rotated_to"], key_id(&new).as_str());
    assert_eq!(o["version"], 2);

    // A key rotates once; the grace is bounded.
    assert!(
        kg.fail(&["key", "rotate", &key_id(&old)])
            .contains("already rotated")
    );
    assert!(
        kg.fail(&["key", "rotate", &key_id(&new), "--grace", "8d"])
            .contains("longer than 7 days")
    );
    assert!(
        kg.fail(&["key", "rotate", &key_id(&new), "--grace", "soon"])
            .contains("not a duration")
    );
}

#[test]
fn default_grace_is_24_hours_and_never_extends_an_expiry() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let old = kg.key(&["--org", "acme", "--name", "crm", "--all-projects"]);
    let out = kg
        .cmd()
        .args(["key", "rotate", &key_id(&old)])
        .output()
        .unwrap();
    assert!(out.status.success());
    let new = String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("keeps working until"), "{err}");
    assert!(!err.contains(&new));
    assert_eq!(kg.decide(&old, &p, &["--at", "+23h"]), "allow");
    assert_eq!(kg.decide(&old, &p, &["--at", "+25h"]), "key expired");
    assert_eq!(
        kg.decide(&new, &p, &["--at", "+1000d"]),
        "allow",
        "never-expiring settings carried over"
    );

    // A 7-day key rotated with a 7-day grace still ends at its own expiry.
    let short = kg.key(&[
        "--org",
        "acme",
        "--name",
        "short",
        "--all-projects",
        "--expires",
        "7d",
    ]);
    let before = kg.json(&["key", "show", &key_id(&short)])["expires_at"].clone();
    kg.ok(&["key", "rotate", &key_id(&short), "--grace", "7d"]);
    assert_eq!(
        kg.json(&["key", "show", &key_id(&short)])["expires_at"],
        before
    );
}

#[test]
fn disabled_keys_are_not_rotated() {
    let kg = Kg::new();
    let k = kg.key(&["--org", "acme", "--name", "x", "--all-projects"]);
    kg.ok(&["key", "disable", &key_id(&k)]);
    let before = kg.audit_len();
    let dump = kg.store_dump();
    assert_eq!(
        kg.fail(&["key", "rotate", &key_id(&k)]),
        "error: a disabled key cannot be rotated; enable it first\n"
    );
    assert_eq!(kg.audit_len(), before);
    assert_eq!(kg.store_dump(), dump);
}

#[test]
fn messages_say_what_a_key_can_still_do() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let old = kg.key(&["--org", "acme", "--name", "crm", "--all-projects"]);
    let out = kg
        .cmd()
        .args(["key", "rotate", &key_id(&old), "--grace", "0"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("the old key {} stopped working now", key_id(&old))),
        "{err}"
    );
    assert!(!err.contains("keeps working"), "{err}");
    // Switching an expired key on or off does not make it work: said so.
    let o = kg
        .cmd()
        .args(["key", "disable", &key_id(&old)])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        format!("disabled key {}\n", key_id(&old))
    );
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.starts_with(&format!("note: key {} is expired (since ", key_id(&old))),
        "{err}"
    );
    let shown = kg.ok(&["key", "show", &key_id(&old)]);
    assert!(
        shown.contains("level:         organization-level\n"),
        "{shown}"
    );
    let pk = kg.key(&["--project", &p, "--name", "ci"]);
    let shown = kg.ok(&["key", "show", &key_id(&pk)]);
    assert!(
        shown.contains(&format!(
            "level:         project-level, owned by project {p}\n"
        )),
        "{shown}"
    );
    kg.ok(&["project", "delete", &p, "--yes"]);
    let audit = kg.json(&["audit"]);
    let deleted = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "project.delete")
        .unwrap();
    assert_eq!(deleted["detail"], "1 key deleted");
}
