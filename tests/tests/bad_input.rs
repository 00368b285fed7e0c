//! Every bad input: one `error:` line, exit 2, and the store as it was.

use crate::support::{Kg, key_id};

/// A store with two acme projects, one globex project, one deleted project
/// and one key.
struct Fixture {
    kg: Kg,
    p: String,
    globex: String,
    deleted: String,
    key: String,
}

fn fixture() -> Fixture {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    kg.project("acme", "Q");
    let globex = kg.project("globex", "G");
    let deleted = kg.project("acme", "Gone");
    kg.ok(&["project", "delete", &deleted, "--yes"]);
    let key = kg.key(&["--org", "acme", "--name", "k", "--all-projects"]);
    Fixture {
        kg,
        p,
        globex,
        deleted,
        key,
    }
}

/// Run `args`, expect a one-line error containing `expect`, and a store
/// whose contents (every tree, every key and value, the issuer key) are
/// exactly what they were.
fn refused(f: &Fixture, args: &[&str], expect: &str) {
    let before = f.kg.store_dump();
    let err = f.kg.fail(args);
    assert!(
        err.contains(expect),
        "keygate {args:?}: expected {expect:?} in {err:?}"
    );
    assert_eq!(err.lines().count(), 1, "keygate {args:?}: {err}");
    assert!(
        f.kg.store_dump() == before,
        "keygate {args:?} changed the store"
    );
}

#[test]
fn bad_names_are_refused() {
    let f = fixture();
    // Words: a run of 40+ letters and digits would be refused as key-looking.
    let long = "word ".repeat(21);
    for (name, why) in [
        ("", "name is empty"),
        ("   ", "name is empty"),
        (long.as_str(), "longer than 100"),
        ("tab\there", "control or invisible formatting character"),
        ("bell\u{7}", "control or invisible formatting character"),
        ("new\nline", "control or invisible formatting character"),
        (
            "right\u{202e}left",
            "control or invisible formatting character",
        ),
        (
            "zero\u{200b}width",
            "control or invisible formatting character",
        ),
    ] {
        refused(
            &f,
            &[
                "key",
                "create",
                "--expires",
                "never",
                "--org",
                "acme",
                "--name",
                name,
                "--all-projects",
            ],
            why,
        );
        refused(&f, &["project", "create", "--org", "acme", name], why);
    }
    assert!(
        f.kg.ok(&["project", "create", "--org", "acme", &"é".repeat(100)])
            .starts_with("prj_")
    );
}

#[test]
fn bad_organizations_are_refused() {
    let f = fixture();
    for org in ["", "Acme", "-acme", "acme-", "ac me", "acme_co"] {
        // `--org=VALUE`: a value starting with `-` is never taken from the
        // next argument (see options_are_never_taken_as_values).
        let org = format!("--org={org}");
        refused(
            &f,
            &[
                "key",
                "create",
                "--expires",
                "never",
                &org,
                "--name",
                "n",
                "--all-projects",
            ],
            "organization must be 1 to 63 lowercase letters",
        );
        refused(
            &f,
            &["project", "create", &org, "n"],
            "organization must be 1 to 63 lowercase letters",
        );
    }
}

#[test]
fn bad_project_selections_are_refused() {
    let f = fixture();
    let base = [
        "key",
        "create",
        "--expires",
        "never",
        "--org",
        "acme",
        "--name",
        "n",
    ];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }
    refused(
        &f,
        &with(&base, &["--projects", "prj_doesnotexist"]),
        "unknown project `prj_doesnotexist`",
    );
    refused(&f, &with(&base, &["--projects", &f.deleted]), "was deleted");
    refused(
        &f,
        &with(&base, &["--projects", &f.globex]),
        "belongs to organization `globex`",
    );
    refused(
        &f,
        &with(&base, &["--projects", &format!("{},{}", f.p, f.globex)]),
        "belongs to organization `globex`",
    );
    refused(&f, &with(&base, &["--projects", ""]), "--projects");
    refused(&f, &with(&base, &["--projects", ","]), "--projects");
    refused(
        &f,
        &with(&base, &["--projects", &format!("{},", f.p)]),
        "--projects",
    );
    refused(&f, &with(&base, &[]), "--all-projects or --projects");
    refused(
        &f,
        &with(&base, &["--all-projects", "--projects", &f.p]),
        "cannot be used with",
    );
    refused(
        &f,
        &[
            "key",
            "create",
            "--expires",
            "never",
            "--project",
            "prj_nope",
            "--name",
            "n",
        ],
        "unknown project",
    );
    refused(
        &f,
        &[
            "key",
            "create",
            "--expires",
            "never",
            "--project",
            &f.deleted,
            "--name",
            "n",
        ],
        "was deleted",
    );
    refused(
        &f,
        &[
            "key",
            "create",
            "--expires",
            "never",
            "--project",
            &f.p,
            "--all-projects",
            "--name",
            "n",
        ],
        "cannot be used with",
    );
    refused(
        &f,
        &[
            "key",
            "create",
            "--expires",
            "never",
            "--name",
            "n",
            "--all-projects",
        ],
        "an organization-level key needs an organization",
    );
    refused(
        &f,
        &["key", "list", "--org", "acme", "--project", &f.globex],
        "belongs to organization `globex`",
    );
}

#[test]
fn expiries_outside_the_policy_are_refused() {
    let f = fixture();
    for (e, why) in [
        ("0d", "outside the policy"),
        ("6d", "outside the policy"),
        ("91d", "outside the policy"),
        ("365d", "outside the policy"),
        ("99999999d", "outside the policy"),
        ("=-1d", "not an expiry"),
        ("abc", "not an expiry"),
        ("30", "not an expiry"),
        ("30h", "not an expiry"),
        ("d", "not an expiry"),
        ("", "not an expiry"),
    ] {
        refused(
            &f,
            &[
                "key",
                "create",
                "--org",
                "acme",
                "--name",
                "n",
                "--all-projects",
                &if let Some(v) = e.strip_prefix('=') {
                    format!("--expires={v}")
                } else {
                    format!("--expires={e}")
                },
            ],
            why,
        );
    }
    for ok in ["7d", "90d", "never"] {
        f.kg.key(&[
            "--org",
            "acme",
            "--name",
            "n",
            "--all-projects",
            "--expires",
            ok,
        ]);
    }
}

#[test]
fn unknown_scopes_and_actions_are_refused() {
    let f = fixture();
    refused(
        &f,
        &[
            "key",
            "create",
            "--expires",
            "never",
            "--org",
            "acme",
            "--name",
            "n",
            "--all-projects",
            "--scope",
            "admin",
        ],
        "unknown scope `admin`",
    );
    refused(
        &f,
        &["verify", "--project", &f.p, "--action", "delete-workflows"],
        "unknown scope",
    );
}

#[test]
fn unknown_key_ids_and_bad_graces_are_refused() {
    let f = fixture();
    for cmd in ["show", "disable", "enable", "rotate", "delete"] {
        refused(
            &f,
            &["key", cmd, "AAAAAAAAAAA"],
            "unknown key id `AAAAAAAAAAA`",
        );
        refused(&f, &["key", cmd, "../../etc"], "unknown key id");
    }
    let id = key_id(&f.key);
    refused(
        &f,
        &["key", "rotate", &id, "--grace", "8d"],
        "longer than 7 days",
    );
    refused(
        &f,
        &["key", "rotate", &id, "--grace", "169h"],
        "longer than 7 days",
    );
    refused(&f, &["key", "rotate", &id, "--grace=-1h"], "not a duration");
    refused(&f, &["project", "delete", "prj_nope"], "unknown project");
    // An unknown or deleted project is a decision of the component (deny),
    // not an error.
    assert_eq!(f.kg.decide(&f.key, "prj_nope", &[]), "unknown project");
    assert_eq!(f.kg.decide(&f.key, &f.deleted, &[]), "project deleted");
    refused(
        &f,
        &["verify", "--project", &f.p, "--at", "yesterday"],
        "not a time",
    );
}

#[test]
fn presented_keys_of_any_length_or_bytes_are_denied_not_crashed() {
    let f = fixture();
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        b"\n".to_vec(),
        vec![0; 64],
        vec![0xff; 300],
        b"kg_".to_vec(),
        "kg_\u{1F600}".repeat(20).into_bytes(),
        vec![b'a'; 70_000],
        f.key.as_bytes()[..f.key.len() - 1].to_vec(),
        [f.key.as_bytes(), b"x"].concat(),
        f.key.to_uppercase().into_bytes(),
    ];
    for len in [1, 10, 60, 62, 63, 64, 73, 74, 200] {
        inputs.push((0..len).map(|i| b"kg_aZ09"[i % 7]).collect());
    }
    for input in inputs {
        let (code, out, err) = f.kg.verify(&input, &f.p, &[]);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (1, "deny: malformed key\n", ""),
            "input {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn missing_foreign_and_corrupt_data_directories_are_refused() {
    let kg = Kg::new();
    // Missing store: reads are refused and nothing is created.
    let missing = kg.path().join("nothing-here");
    let run = |dir: &std::path::Path, args: &[&str]| {
        let o = assert_cmd::Command::new(crate::support::keygate_bin())
            .env_remove("KEYGATE_DATA_DIR")
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        (o.status.code(), String::from_utf8(o.stderr).unwrap())
    };
    let (code, err) = run(&missing, &["key", "list", "--org", "acme"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no keygate store"), "{err}");
    assert!(!missing.exists());

    // A failed first write leaves a missing directory missing.
    let (code, _) = run(
        &missing,
        &[
            "key",
            "create",
            "--expires",
            "never",
            "--org",
            "acme",
            "--name",
            "",
            "--all-projects",
        ],
    );
    assert_eq!(code, Some(2));
    assert!(!missing.exists());
    // ... and an empty one empty.
    let empty = kg.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _) = run(
        &empty,
        &[
            "key",
            "create",
            "--expires",
            "never",
            "--org",
            "acme",
            "--name",
            "n",
            "--projects",
            "prj_x",
        ],
    );
    assert_eq!(code, Some(2));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

    // Foreign: a directory with other things in it.
    let foreign = kg.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let (code, err) = run(
        &foreign,
        &[
            "key",
            "create",
            "--expires",
            "never",
            "--org",
            "acme",
            "--name",
            "n",
            "--all-projects",
        ],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("not a keygate data directory"), "{err}");
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);

    // Corrupt: a db directory that is not a sled store of ours.
    let corrupt = kg.path().join("corrupt");
    std::fs::create_dir_all(corrupt.join("db")).unwrap();
    std::fs::write(corrupt.join("db").join("conf"), b"garbage garbage").unwrap();
    let (code, err) = run(&corrupt, &["key", "list", "--org", "acme"]);
    assert_eq!(code, Some(2));
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[cfg(unix)]
#[test]
fn an_issuer_key_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let path = f.kg.path().join("issuer.key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = f.kg.fail(&["key", "list", "--org", "acme"]);
    assert!(
        err.contains("accessible to other users") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&path, "keygate-issuer-ed25519-v1\nnot hex\n").unwrap();
    assert!(
        f.kg.fail(&["key", "list", "--org", "acme"])
            .contains("damaged")
    );
}

#[test]
fn arguments_that_look_like_keys_are_refused_and_never_echoed() {
    let f = fixture();
    let id = key_id(&f.key);
    let secret = &f.key[f.key.len() - 49..f.key.len() - 6];
    let cut = &f.key[..f.key.len() - 3];
    // The id with the deployment's prefix is the id (public); one
    // character more is not an id any more.
    let with_prefix = format!("kg_{id}{}", &f.key[14..15]);
    let name_arg = format!("--name={}", f.key);
    // The key's body without its prefix, or with the separator changed.
    let body = &f.key[3..];
    let dashed = format!("kg-{body}");
    let upper = format!("KG_{body}");
    let cases: Vec<Vec<&str>> = vec![
        vec!["key", "show", &f.key],
        vec!["key", "show", cut],
        vec!["key", "delete", &with_prefix],
        vec!["key", "rotate", &f.key, "--grace", "1h"],
        vec!["verify", "--project", &f.p, &f.key],
        vec![
            "key",
            "create",
            "--expires",
            "never",
            "--org",
            "acme",
            &name_arg,
            "--all-projects",
        ],
        vec!["project", "create", "--org", "acme", &f.key],
        vec!["key", "frobnicate", &f.key],
        vec!["--data-dir", &f.key, "key", "list", "--org", "acme"],
        vec!["key", "show", body],
        vec!["key", "show", &dashed],
        vec!["project", "delete", &upper],
        vec!["project", "create", "--org", "acme", body],
    ];
    for args in cases {
        let before = f.kg.store_dump();
        let o = f.kg.run(&args);
        let err = String::from_utf8(o.stderr).unwrap();
        let all = format!("{}{err}", String::from_utf8_lossy(&o.stdout));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.lines().count() == 1,
            "{err}"
        );
        assert!(err.contains("looks like an API key"), "{args:?}: {err}");
        assert!(
            !all.contains(secret) && !all.contains(&id),
            "{args:?} echoed the key: {all}"
        );
        assert!(f.kg.store_dump() == before, "{args:?} changed the store");
    }
    // A key id alone is fine (it is public), and so are names with
    // underscores that do not look like keys.
    f.kg.ok(&["key", "show", &id]);
    f.kg.key(&["--org", "acme", "--name", "crm_sync_prod", "--all-projects"]);
}

#[test]
fn options_are_never_taken_as_values() {
    let f = fixture();
    for (args, expect) in [
        (
            vec!["project", "create", "--org", "acme", "--name"],
            "unexpected argument '--name'",
        ),
        (
            vec![
                "key",
                "create",
                "--expires",
                "never",
                "--org",
                "acme",
                "--name",
                "--json",
                "--all-projects",
            ],
            "a value is required for '--name <NAME>'",
        ),
        (
            vec![
                "key",
                "create",
                "--expires",
                "never",
                "--org",
                "--all-projects",
                "--name",
                "n",
            ],
            "a value is required for '--org <ORG>'",
        ),
        (
            vec!["key", "list", "--org", "--json"],
            "a value is required for '--org <ORG>'",
        ),
        (
            vec!["verify", "--project", &f.p, "--at", "--json"],
            "expects a time, not an option",
        ),
        (
            vec!["key", "rotate", &key_id(&f.key), "--grace", "--json"],
            "a value is required for '--grace <GRACE>'",
        ),
    ] {
        let before = f.kg.store_dump();
        let err = f.kg.fail(&args);
        assert!(err.contains(expect), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(f.kg.store_dump() == before, "{args:?} changed the store");
    }
    // `--at` still takes a time in the past.
    assert_eq!(
        f.kg.decide(&f.key, &f.p, &["--at", "-1h"]),
        "key not yet valid"
    );
}

#[test]
fn with_json_an_error_is_one_json_object_on_stderr() {
    let kg = Kg::new();
    kg.project("acme", "billing");
    let before = kg.store_dump();
    for (args, code) in [
        (vec!["--json", "key", "show", "AAAAAAAAAAA"], "unknown-key"),
        (
            vec![
                "--json",
                "key",
                "create",
                "--org",
                "acme",
                "--name",
                "",
                "--all-projects",
                "--expires",
                "never",
            ],
            "name-empty",
        ),
        (
            vec![
                "--json",
                "key",
                "create",
                "--org",
                "acme",
                "--name",
                "x",
                "--all-projects",
                "--expires",
                "5d",
            ],
            "expiry-out-of-range",
        ),
        (
            vec!["--json", "key", "rotate", "AAAAAAAAAAA", "--grace", "9x"],
            "usage",
        ),
    ] {
        let o = kg.run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty());
        let err = String::from_utf8(o.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        let v: serde_json::Value = serde_json::from_str(&err).unwrap();
        assert_eq!(v["error"]["code"], code, "{err}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(kg.store_dump(), before);
}
