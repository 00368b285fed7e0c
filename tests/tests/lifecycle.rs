//! The whole lifecycle through the real binary.

use crate::support::{Kg, StdinPiped, key_id};

#[test]
fn org_key_lifecycle_create_verify_list_disable_enable_delete() {
    let kg = Kg::new();
    let billing = kg.project("acme", "Billing");
    let web = kg.project("acme", "Web");
    let foreign = kg.project("globex", "Billing");
    let key = kg.key(&[
        "--org",
        "acme",
        "--name",
        "crm-sync",
        "--all-projects",
        "--expires",
        "30d",
    ]);
    let id = key_id(&key);
    assert!(key.starts_with("kg_"));

    assert_eq!(kg.decide(&key, &billing, &[]), "allow");
    assert_eq!(kg.decide(&key, &web, &[]), "allow");
    // Projects created after the key are covered by "all projects".
    let later = kg.project("acme", "Later");
    assert_eq!(kg.decide(&key, &later, &[]), "allow");
    // Never another organization's project.
    assert_eq!(kg.decide(&key, &foreign, &[]), "wrong organization");
    let (code, out, _) = kg.verify(key.as_bytes(), &foreign, &["--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&v["decision"], &v["reason"], &v["class"]),
        (
            &serde_json::json!("deny"),
            &serde_json::json!("wrong-organization"),
            &serde_json::json!("forbidden")
        )
    );

    let list = kg.json(&["key", "list", "--org", "acme"]);
    let row = &list.as_array().unwrap()[0];
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["name"], "crm-sync");
    assert_eq!(row["level"], "organization");
    assert_eq!(row["scopes"][0], "trigger-workflows");
    assert_eq!(
        row["access"],
        serde_json::json!({"all_projects": true, "projects": []})
    );
    assert_eq!(row["status"], "active");
    assert_eq!(row["expiry_policy"], "30d");
    assert!(row["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(row["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        kg.json(&["key", "list", "--org", "globex"])
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let human = kg.ok(&["key", "list", "--org", "acme"]);
    assert!(human.starts_with("ID "), "{human}");
    assert!(human.contains(&id) && human.contains("crm-sync"), "{human}");
    let row = human.lines().find(|l| l.contains(&id)).unwrap();
    let fields: Vec<&str> = row.split_whitespace().skip(2).take(6).collect();
    // Expiry relative to now: 30 days, or 29 once a second has passed.
    assert!(
        fields == ["org", "all", "active", "in", "30", "days"]
            || fields == ["org", "all", "active", "in", "29", "days"],
        "{human}"
    );
    let wide = kg.ok(&["key", "list", "--org", "acme", "--wide"]);
    assert!(
        wide.contains("all-projects") && wide.contains("trigger-workflows"),
        "{wide}"
    );

    // Disable stops validation at once; enable restores it.
    assert!(kg.ok(&["key", "disable", &id]).contains("disabled"));
    assert_eq!(kg.decide(&key, &billing, &[]), "key disabled");
    let shown = kg.json(&["key", "show", &id]);
    assert_eq!(shown["status"], "inactive");
    assert_eq!(shown["inactive_reason"], "disabled");
    assert_eq!(shown["version"], 2);
    assert!(kg.ok(&["key", "disable", &id]).contains("already disabled"));
    kg.ok(&["key", "enable", &id]);
    assert_eq!(kg.decide(&key, &billing, &[]), "allow");

    // Delete stops it at once and for good.
    kg.ok(&["key", "delete", &id, "--yes"]);
    assert_eq!(kg.decide(&key, &billing, &[]), "unknown key");
    assert!(kg.fail(&["key", "show", &id]).contains("was deleted"));
    assert_eq!(
        kg.json(&["key", "list", "--org", "acme"])
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let audit = kg.json(&["audit", "--org", "acme"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "org.create",
            "project.create",
            "project.create",
            "key.create",
            "project.create",
            "key.disable",
            "key.enable",
            "key.delete"
        ]
    );
}

#[test]
fn project_level_keys_act_only_on_their_project() {
    let kg = Kg::new();
    let alpha = kg.project("acme", "Alpha");
    let beta = kg.project("acme", "Beta");
    let other = kg.project("globex", "Alpha");
    let key = kg.key(&["--project", &alpha, "--name", "alpha-ci", "--expires", "7d"]);
    assert_eq!(kg.decide(&key, &alpha, &[]), "allow");
    assert_eq!(kg.decide(&key, &beta, &[]), "project not granted");
    assert_eq!(kg.decide(&key, &other, &[]), "wrong organization");
    assert_eq!(kg.decide(&key, &alpha, &["--at", "+7d"]), "key expired");
    assert_eq!(kg.decide(&key, &alpha, &["--at", "+6d"]), "allow");

    let v = kg.json(&["key", "show", &key_id(&key)]);
    assert_eq!(v["level"], "project");
    assert_eq!(v["project"], alpha.as_str());
    assert_eq!(v["access"]["projects"][0], alpha.as_str());
    assert_eq!(v["access"]["all_projects"], false);
    // The org listing includes project-level keys; --project narrows it.
    assert_eq!(
        kg.json(&["key", "list", "--org", "acme"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        kg.json(&["key", "list", "--org", "acme", "--project", &beta])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        kg.json(&["key", "list", "--org", "acme", "--project", &alpha])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // --org, when given, must be the project's organization.
    assert!(
        kg.fail(&[
            "key",
            "create",
            "--expires",
            "never",
            "--org",
            "globex",
            "--project",
            &alpha,
            "--name",
            "x"
        ])
        .contains("belongs to organization `acme`")
    );
}

#[test]
fn selected_projects_keys_act_only_on_their_set() {
    let kg = Kg::new();
    let a = kg.project("acme", "A");
    let b = kg.project("acme", "B");
    let c = kg.project("acme", "C");
    let key = kg.key(&[
        "--org",
        "acme",
        "--name",
        "ab",
        "--projects",
        &format!("{a},{b}"),
    ]);
    assert_eq!(kg.decide(&key, &a, &[]), "allow");
    assert_eq!(kg.decide(&key, &b, &[]), "allow");
    assert_eq!(kg.decide(&key, &c, &[]), "project not granted");
    let listed = kg.json(&["key", "list", "--org", "acme", "--project", &c]);
    assert_eq!(listed.as_array().unwrap().len(), 0);
    let v = kg.json(&["key", "show", &key_id(&key)]);
    assert_eq!(v["expiry_policy"], "never");
    assert!(v["expires_at"].is_null());
}

#[test]
fn deleting_a_project_deletes_its_project_level_keys() {
    let kg = Kg::new();
    let alpha = kg.project("acme", "Alpha");
    let beta = kg.project("acme", "Beta");
    let k1 = kg.key(&["--project", &alpha, "--name", "one"]);
    let k2 = kg.key(&["--project", &alpha, "--name", "two"]);
    let kb = kg.key(&["--project", &beta, "--name", "beta"]);
    let org = kg.key(&["--org", "acme", "--name", "org", "--all-projects"]);
    let out = kg.json(&["project", "delete", &alpha, "--yes"]);
    let mut deleted: Vec<String> = out["deleted_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    deleted.sort();
    let mut expected = vec![key_id(&k1), key_id(&k2)];
    expected.sort();
    assert_eq!(deleted, expected);
    // The deleted project's keys are gone; other keys are denied on it.
    assert_eq!(kg.decide(&k1, &alpha, &[]), "unknown key");
    assert_eq!(kg.decide(&org, &alpha, &[]), "project deleted");
    assert_eq!(kg.decide(&kb, &beta, &[]), "allow");
    assert_eq!(kg.decide(&org, &beta, &[]), "allow");
    let projects = kg.json(&["project", "list", "--org", "acme"]);
    assert_eq!(projects.as_array().unwrap().len(), 1);
    assert!(
        kg.fail(&["project", "delete", &alpha, "--yes"])
            .contains("was deleted")
    );
    assert!(
        kg.fail(&["key", "show", &key_id(&k1)])
            .contains("was deleted")
    );
}

#[test]
fn issuer_module_and_init_commands() {
    let kg = Kg::new();
    let out = kg.ok(&["init", "--prefix", "acmekey"]);
    assert!(out.contains("initialised"));
    let key = kg.key(&["--org", "acme", "--name", "n", "--all-projects"]);
    assert!(key.starts_with("acmekey_"));
    assert!(kg.fail(&["init"]).contains("already holds a keygate store"));
    let issuer = kg.json(&["issuer", "show"]);
    assert_eq!(issuer["public_key"].as_str().unwrap().len(), 64);
    assert_eq!(issuer["issuer_key_id"].as_str().unwrap().len(), 16);

    let wasm = kg.path().join("exported.wasm");
    let m = kg.json(&["module", "write", wasm.to_str().unwrap()]);
    let bytes = std::fs::read(&wasm).unwrap();
    assert_eq!(&bytes[..4], b"\0asm");
    assert_eq!(m["bytes"], bytes.len());
    assert_eq!(m["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn keygate_key_env_is_read_when_stdin_is_not_used() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let key = kg.key(&["--org", "acme", "--name", "env", "--all-projects"]);
    let o = kg
        .cmd()
        .args(["verify", "--project", &p])
        .env("KEYGATE_KEY", &key)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(
        &kg.cmd()
            .args(["--json", "verify", "--project", &p])
            .env("KEYGATE_KEY", "kg_nope")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["reason"], "malformed");
    assert_eq!(v["class"], "unauthenticated");
}

#[test]
fn the_first_write_initialises_the_store_and_says_so() {
    let kg = Kg::new();
    let o = kg.cmd().args(["org", "create", "acme"]).output().unwrap();
    assert!(o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("initialised a new store"), "{err}");
    let o = kg
        .cmd()
        .args(["project", "create", "--org", "acme", "Q"])
        .output()
        .unwrap();
    assert!(!String::from_utf8(o.stderr).unwrap().contains("initialised"));
}

#[test]
fn a_corrupt_compile_cache_is_ignored_and_rebuilt() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let key = kg.key(&["--org", "acme", "--name", "c", "--all-projects"]);
    let cache = kg.path().join("cache");
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let good = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], b"not a compiled component").unwrap();
    assert_eq!(kg.decide(&key, &p, &[]), "allow");
    assert_eq!(std::fs::read(&files[0]).unwrap(), good);
    std::fs::remove_dir_all(&cache).unwrap();
    assert_eq!(kg.decide(&key, &p, &[]), "allow");
}

#[test]
fn completions_and_the_man_page_come_from_the_parser() {
    let kg = Kg::new();
    let bash = kg.ok(&["completions", "bash"]);
    // Every subcommand is completed, and the script is valid bash.
    for sub in [
        "project",
        "key",
        "verify",
        "snapshot",
        "serve",
        "admin-token",
        "completions",
        "man",
    ] {
        assert!(bash.contains(sub), "{sub} missing from the bash completion");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("keygate.bash");
    std::fs::write(&script, &bash).unwrap();
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(checked.success());
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        assert!(
            kg.ok(&["completions", shell]).contains("admin-token"),
            "{shell}"
        );
    }
    let man = kg.ok(&["man"]);
    assert!(man.starts_with(".ie"), "{}", &man[..40]);
    assert!(man.contains(".TH keygate 1"));
    assert!(man.contains("keygate\\-serve") || man.contains("serve"));
    let err = kg.fail(&["completions", "nosh"]);
    assert!(err.contains("possible values"), "{err}");
    // Nothing of it needs or touches a store.
    assert!(!kg.path().exists() || std::fs::read_dir(kg.path()).unwrap().next().is_none());
}

/// Every command's `--help`, walked from `keygate --help` down: each one
/// that runs something shows an example; a mistyped subcommand gets a
/// suggestion only when it is close.
#[test]
fn every_command_has_examples_in_its_help() {
    let kg = Kg::new();
    let help = |path: &[String]| {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        kg.ok(&args)
    };
    let mut todo = vec![Vec::<String>::new()];
    let mut leaves = Vec::new();
    while let Some(path) = todo.pop() {
        let text = help(&path);
        let subs: Vec<String> = text
            .split("\nCommands:\n")
            .nth(1)
            .map(|rest| {
                rest.lines()
                    .take_while(|l| l.starts_with("  "))
                    .filter_map(|l| l.split_whitespace().next())
                    .filter(|c| *c != "help")
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let runs_itself = subs.is_empty() || path == ["audit"];
        if runs_itself || path.is_empty() {
            assert!(
                text.contains("\nExample:\n  ") || text.contains("\nExamples:\n  "),
                "no example in `keygate {} --help`",
                path.join(" ")
            );
            leaves.push(path.join(" "));
        }
        for s in subs {
            let mut p = path.clone();
            p.push(s);
            todo.push(p);
        }
    }
    // Every command was reached (the walk found them, the list is a floor).
    for c in [
        "org policy set",
        "key rotate",
        "snapshot inspect",
        "admin-token revoke",
        "audit verify",
    ] {
        assert!(leaves.iter().any(|l| l == c), "{c} not reached: {leaves:?}");
    }
    assert!(leaves.len() >= 30, "{}", leaves.len());
    assert_eq!(
        kg.fail(&["key", "frobnicate"]),
        "error: unrecognized subcommand 'frobnicate' (see --help)\n"
    );
    assert!(
        kg.fail(&["key", "rotat"])
            .contains("a similar subcommand exists: 'rotate'")
    );
}

#[test]
fn key_list_fits_the_screen_by_display_width_and_says_what_people_need() {
    use unicode_width::UnicodeWidthStr;
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let web = kg.project("acme", "web shop");
    kg.key(&[
        "--org",
        "acme",
        "--name",
        "crm-sync for the sales team 🚀🚀 production systems",
        "--all-projects",
        "--expires",
        "30d",
    ]);
    let etl = kg.key(&[
        "--org",
        "acme",
        "--name",
        "etl",
        "--projects",
        &format!("{p},{web}"),
    ]);
    kg.ok(&["key", "rotate", &etl[3..14], "--grace", "2h"]);
    kg.ok(&["project", "delete", &web, "--yes"]);
    for columns in ["60", "80"] {
        let o = kg
            .cmd()
            .env("COLUMNS", columns)
            .env_remove("NO_COLOR")
            .args(["key", "list", "--org", "acme"])
            .output()
            .unwrap();
        let text = String::from_utf8(o.stdout).unwrap();
        assert!(!text.contains('\u{1b}'), "colour on a pipe: {text:?}");
        let lines: Vec<&str> = text.lines().collect();
        let limit: usize = columns.parse().unwrap();
        assert!(
            lines.iter().all(|l| l.width() <= limit),
            "wider than {limit}:\n{text}"
        );
        // Every row's STATUS starts under the header's, by display width.
        let at = |l: &str, word: &str| l.find(word).map(|i| l[..i].width());
        let column = at(lines[0], "STATUS").unwrap();
        let mut seen = Vec::new();
        for l in &lines[1..] {
            let word = ["rotated", "active"]
                .into_iter()
                .find(|w| l.contains(w))
                .unwrap();
            assert_eq!(at(l, word), Some(column), "misaligned:\n{text}");
            seen.push(word);
        }
        seen.sort_unstable();
        assert_eq!(seen, ["active", "active", "rotated"], "{text}");
        assert!(
            text.contains("in 29 days") || text.contains("in 30 days"),
            "{text}"
        );
        assert!(text.contains("never"), "{text}");
        assert!(
            text.contains("in 1 hour") || text.contains("in 2 hours"),
            "{text}"
        );
    }
    let wide = kg.ok(&["key", "list", "--org", "acme", "--wide"]);
    assert!(
        wide.contains("ROTATED TO")
            && wide.contains("crm-sync for the sales team 🚀🚀 production systems")
    );
    // Projects by name; a deleted project in a selection is marked.
    let o = kg
        .cmd()
        .env("COLUMNS", "200")
        .args(["key", "list", "--org", "acme"])
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains(&format!("billing, {web} (deleted)"))
            || text.contains(&format!("{web} (deleted), billing")),
        "{text}"
    );
    kg.org("nobody");
    assert_eq!(
        kg.ok(&["key", "list", "--org", "nobody"]),
        "no keys in organization nobody\n"
    );
    // An organization that does not exist is an error, with the nearest.
    assert_eq!(
        kg.fail(&["key", "list", "--org", "acmee"]),
        "error: unknown organization `acmee` (did you mean `acme`?)\n"
    );
    assert_eq!(
        kg.fail(&["key", "list", "--org", "zzz"]),
        "error: unknown organization `zzz`\n"
    );
}

#[test]
fn deletes_name_what_goes_and_need_a_yes() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let key = kg.key(&["--project", &p, "--name", "billing-ci"]);
    let id = key_id(&key);
    let before = kg.store_dump();
    // No terminal, no --yes: refused, naming what would go; nothing changes.
    let err = kg.fail(&["key", "delete", &id]);
    assert_eq!(
        err,
        format!(
            "error: this would delete key {id} (billing-ci) of organization acme, which cannot be undone: add --yes to confirm (there is no terminal to ask on)\n"
        )
    );
    let err = kg.fail(&["project", "delete", &p]);
    assert!(
        err.contains(&format!("delete project {p} (billing) of organization acme and its project-level key {id} (billing-ci)")),
        "{err}"
    );
    assert_eq!(kg.store_dump(), before);
    // On a terminal: asked; anything but "yes" deletes nothing.
    let on_a_terminal = |args: &str, answer: &str| {
        let cmd = format!(
            "{} --data-dir {} {args}",
            crate::support::keygate_bin().display(),
            kg.path().display()
        );
        let o = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin_piped_with(answer)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
        )
    };
    let (code, shown) = on_a_terminal(&format!("key delete {id}"), "no\n");
    assert_eq!(code, Some(2), "{shown}");
    assert!(
        shown.contains("It cannot be undone. Type yes to go on:"),
        "{shown}"
    );
    assert!(
        shown.contains("not confirmed; nothing was deleted"),
        "{shown}"
    );
    assert_eq!(kg.store_dump(), before);
    let (code, shown) = on_a_terminal(&format!("key delete {id}"), "yes\n");
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(kg.decide(&key, &p, &[]), "unknown key");
}

#[test]
fn a_key_without_an_expiry_must_be_asked_for() {
    let kg = Kg::new();
    kg.project("acme", "billing");
    let before = kg.store_dump();
    let err = kg.fail(&[
        "key",
        "create",
        "--org",
        "acme",
        "--name",
        "k",
        "--all-projects",
    ]);
    assert!(err.contains("--expires"), "{err}");
    assert_eq!(kg.store_dump(), before);
    let key = kg.key(&[
        "--org",
        "acme",
        "--name",
        "k",
        "--all-projects",
        "--expires",
        "never",
    ]);
    assert_eq!(
        kg.json(&["key", "show", &key_id(&key)])["expiry_policy"],
        "never"
    );
}

#[test]
fn key_list_and_audit_filter_sort_and_limit() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let a = kg.key(&[
        "--org",
        "acme",
        "--name",
        "Zeta sync",
        "--all-projects",
        "--expires",
        "7d",
    ]);
    let b = kg.key(&[
        "--org",
        "acme",
        "--name",
        "alpha etl",
        "--all-projects",
        "--expires",
        "90d",
    ]);
    let c = kg.key(&[
        "--project",
        &p,
        "--name",
        "billing ci",
        "--expires",
        "never",
    ]);
    kg.ok(&["key", "disable", &key_id(&c)]);
    kg.ok(&["key", "rotate", &key_id(&b), "--grace", "2h"]);
    let ids = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["key", "list", "--org", "acme"];
        a.extend_from_slice(args);
        kg.json(&a)
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&["--status", "disabled"]), ["billing ci"]);
    assert_eq!(ids(&["--status", "inactive"]), ["billing ci"]);
    assert_eq!(ids(&["--status", "rotated"]), ["alpha etl"]);
    assert_eq!(ids(&["--level", "project"]), ["billing ci"]);
    assert_eq!(
        ids(&["--name", "ETL", "--sort", "name"]),
        ["alpha etl", "alpha etl"]
    );
    assert_eq!(ids(&["--name", &key_id(&a)]), ["Zeta sync"]);
    // Expiring within 8 days: the 7-day key and the rotated one (2 h).
    assert_eq!(
        ids(&["--expiring-within", "8d", "--sort", "expires"]),
        ["alpha etl", "Zeta sync"]
    );
    assert_eq!(
        ids(&["--sort", "name", "--limit", "2"]),
        ["alpha etl", "alpha etl"]
    );
    assert_eq!(
        kg.ok(&["key", "list", "--org", "acme", "--status", "expired"]),
        "no keys match\n"
    );
    let err = kg.fail(&["key", "list", "--org", "acme", "--status", "sleepy"]);
    assert!(err.contains("possible values"), "{err}");

    let actions = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["audit"];
        a.extend_from_slice(args);
        kg.json(&a)
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["action"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(actions(&["--action", "key.disable"]), ["key.disable"]);
    assert_eq!(actions(&["--action", "project."]), ["project.create"]);
    assert_eq!(actions(&["--limit", "2"]), ["key.disable", "key.rotate"]);
    assert!(actions(&["--since", "+1h"]).is_empty());
    assert_eq!(actions(&["--since", "-1h"]).len(), actions(&[]).len());
}

#[test]
fn key_show_finds_a_key_by_a_name_unique_in_its_organization() {
    let kg = Kg::new();
    kg.project("acme", "billing");
    kg.project("globex", "web");
    let crm = kg.key(&["--org", "acme", "--name", "crm-sync", "--all-projects"]);
    kg.key(&["--org", "acme", "--name", "etl", "--all-projects"]);
    let etl2 = kg.key(&["--org", "acme", "--name", "etl", "--all-projects"]);
    kg.key(&["--org", "globex", "--name", "crm-sync", "--all-projects"]);
    let shown = kg.json(&["key", "show", "crm-sync", "--org", "acme"]);
    assert_eq!(shown["id"], key_id(&crm).as_str());
    assert_eq!(
        kg.json(&["key", "show", &key_id(&crm), "--org", "acme"])["name"],
        "crm-sync"
    );
    let err = kg.fail(&["key", "show", "etl", "--org", "acme"]);
    assert!(
        err.contains("2 keys of organization acme are named `etl`") && err.contains(&key_id(&etl2)),
        "{err}"
    );
    let err = kg.fail(&["key", "show", "nothing", "--org", "acme"]);
    assert!(
        err.contains("has no key with the id or name `nothing`"),
        "{err}"
    );
    // Without --org, an id only.
    let err = kg.fail(&["key", "show", "crm-sync"]);
    assert!(err.contains("unknown key id"), "{err}");
    // An id as the key starts (with the deployment's prefix) is the id.
    let prefixed = &crm[..14];
    assert_eq!(
        kg.json(&["key", "show", prefixed])["id"],
        key_id(&crm).as_str()
    );
    assert_eq!(
        kg.json(&["key", "show", prefixed, "--org", "acme"])["id"],
        key_id(&crm).as_str()
    );
    kg.ok(&["key", "disable", prefixed]);
    assert_eq!(
        kg.json(&["key", "show", &key_id(&crm)])["status"],
        "inactive"
    );
    // Anything more after the prefix is refused, and not repeated.
    let longer = &crm[..20];
    let err = kg.fail(&["key", "show", longer]);
    assert!(
        err.contains("looks like an API key") && !err.contains(longer),
        "{err}"
    );
}

#[test]
fn create_keys_commits_a_batch_once_and_answers_each_key_on_its_own() {
    use keygate::admin::{Access, KeySpec, Keygate, Location};
    use keygate::runtime::bindings::ExpiryPolicy;
    let kg = Kg::new();
    let billing = kg.project("acme", "Billing");
    kg.org("globex");
    kg.ok(&["org", "policy", "set", "globex", "--max-expiry", "30d"]);
    let spec = |org: &str, name: &str, expiry| KeySpec {
        organization: Some(org.into()),
        name: name.into(),
        access: Access::AllProjects,
        expiry,
        scopes: vec!["trigger-workflows".into()],
    };
    let mut store = Keygate::open(&Location::new(kg.path().to_path_buf()), false).unwrap();
    let before = store.sequence().unwrap();
    store.set_actor("batch test");
    let now = keygate::admin::now().unwrap();
    let got = store
        .create_keys(
            vec![
                spec("acme", "one", ExpiryPolicy::Never),
                // Refused on its own: globex's policy wants at most 30 days.
                spec("globex", "too long", ExpiryPolicy::Never),
                spec("nowhere", "no such org", ExpiryPolicy::Never),
                spec("acme", "two", ExpiryPolicy::Days(7)),
                spec("globex", "fits", ExpiryPolicy::Days(30)),
            ],
            now,
        )
        .unwrap();
    let outcome: Vec<Result<String, String>> = got
        .iter()
        .map(|r| match r {
            Ok(c) => Ok(c.view.name.clone()),
            Err(e) => Err(e.code().to_string()),
        })
        .collect();
    assert_eq!(
        outcome,
        vec![
            Ok("one".to_string()),
            Err("expiry-required".to_string()),
            Err("unknown-organization".to_string()),
            Ok("two".to_string()),
            Ok("fits".to_string()),
        ]
    );
    // One commit: the three keys' audit events took the next three
    // sequence numbers, each with the actor.
    assert_eq!(store.sequence().unwrap(), before + 3);
    let events: Vec<_> = store
        .audit(None)
        .unwrap()
        .into_iter()
        .filter(|e| e.sequence > before)
        .map(|e| (e.action, e.subject, e.actor))
        .collect();
    let ids: Vec<String> = got
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|c| c.view.id.clone())
        .collect();
    assert_eq!(
        events,
        ids.iter()
            .map(|id| (
                "key.create".to_string(),
                id.clone(),
                Some("batch test".to_string())
            ))
            .collect::<Vec<_>>()
    );
    let keys: Vec<String> = got
        .into_iter()
        .filter_map(Result::ok)
        .map(|c| c.issued.expose_key().to_string())
        .collect();
    drop(store);
    assert_eq!(kg.decide(&keys[0], &billing, &[]), "allow");
    assert_eq!(kg.decide(&keys[1], &billing, &[]), "allow");
    assert_eq!(kg.decide(&keys[2], &billing, &[]), "wrong organization");
    kg.ok(&["audit", "verify"]);
}
