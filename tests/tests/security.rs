//! One-time display, no secret on disk, tamper detection, locking.

use crate::support::{Kg, key_id};
use keygate::schema;

#[test]
fn the_key_is_printed_once_alone_on_stdout() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let o = kg
        .cmd()
        .args([
            "key",
            "create",
            "--expires",
            "never",
            "--org",
            "acme",
            "--name",
            "once",
            "--all-projects",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let stdout = String::from_utf8(o.stdout).unwrap();
    let stderr = String::from_utf8(o.stderr).unwrap();
    let key = stdout.trim_end().to_string();
    assert_eq!(stdout, format!("{key}\n"));
    assert!(
        stderr.contains(&key_id(&key)) && stderr.contains("only time"),
        "{stderr}"
    );
    assert!(!stderr.contains(&key));
    // Nothing prints it again.
    let secret = &key[key.len() - 49..key.len() - 6];
    for args in [
        vec!["key", "list", "--org", "acme"],
        vec!["--json", "key", "list", "--org", "acme"],
        vec!["key", "show", &key_id(&key)],
        vec!["--json", "key", "show", &key_id(&key)],
        vec!["--json", "audit"],
    ] {
        let o = kg.run(&args);
        let all = [o.stdout, o.stderr].concat();
        let text = String::from_utf8_lossy(&all);
        assert!(!text.contains(secret), "{args:?} printed the secret");
    }
    let (code, out, err) = kg.verify(key.as_bytes(), &p, &[]);
    assert_eq!(code, 0);
    assert!(!out.contains(secret) && !err.contains(secret));
    // JSON creation carries the key as one field.
    let j = kg.json(&[
        "key",
        "create",
        "--expires",
        "never",
        "--org",
        "acme",
        "--name",
        "j",
        "--all-projects",
    ]);
    assert!(j["key"].as_str().unwrap().starts_with("kg_"));
    assert!(j.get("key_hash").is_none());
}

#[test]
fn no_file_in_the_data_directory_holds_a_key_or_its_secret() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let mut keys = Vec::new();
    for i in 0..5 {
        keys.push(kg.key(&[
            "--org",
            "acme",
            "--name",
            &format!("k{i}"),
            "--all-projects",
        ]));
    }
    keys.push(kg.key(&["--project", &p, "--name", "proj"]));
    let rotated = kg
        .ok(&["key", "rotate", &key_id(&keys[0])])
        .trim_end()
        .to_string();
    keys.push(rotated);
    for k in &keys {
        assert_eq!(kg.decide(k, &p, &[]), "allow");
    }
    let files = kg.files();
    assert!(files.len() > 3);
    for k in &keys {
        let secret = &k[k.len() - 49..k.len() - 6];
        for (path, bytes) in &files {
            for needle in [k.as_bytes(), secret.as_bytes()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds a key",
                    path.display()
                );
            }
        }
    }
}

/// Rewrite one stored record's canonical bytes, keeping its signature, as
/// someone with write access to the files could.
fn tamper(kg: &Kg, id: &str, edit: impl Fn(&mut Vec<u8>)) {
    let db = crate::support::open_sled(&kg.path().join("db"));
    let keys = db.open_tree(schema::tree::KEYS).unwrap();
    let mut signed = schema::decode_signed(&keys.get(id).unwrap().unwrap()).unwrap();
    edit(&mut signed.canonical);
    keys.insert(id, schema::encode_signed(&signed).unwrap())
        .unwrap();
    db.flush().unwrap();
}

#[test]
fn a_tampered_record_is_denied_and_reported() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let q = kg.project("acme", "Q");
    let key = kg.key(&["--org", "acme", "--name", "narrow", "--projects", &p]);
    let id = key_id(&key);
    assert_eq!(kg.decide(&key, &q, &[]), "project not granted");
    // Change the selected project id to Q in the stored bytes (same length).
    let (p2, q2) = (p.clone(), q.clone());
    tamper(&kg, &id, move |c| {
        let at = c
            .windows(p2.len())
            .position(|w| w == p2.as_bytes())
            .unwrap();
        c[at..at + q2.len()].copy_from_slice(q2.as_bytes());
    });
    let (code, out, err) = kg.verify(key.as_bytes(), &q, &[]);
    assert_eq!(code, 1);
    assert_eq!(out.trim(), "deny: record signature invalid");
    assert!(err.contains("warning") && err.contains(&id), "{err}");
    assert_eq!(kg.decide(&key, &p, &[]), "record signature invalid");

    let list = kg.run(&["--json", "key", "list", "--org", "acme"]);
    assert!(list.status.success());
    assert!(String::from_utf8_lossy(&list.stderr).contains(&id));
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["inactive_reason"], "signature-invalid");
    for cmd in ["show", "disable", "enable", "rotate"] {
        let err = kg.fail(&["key", cmd, &id]);
        assert!(
            err.contains("failed signature verification"),
            "{cmd}: {err}"
        );
    }
    // Deleting is how the operator gets rid of it.
    kg.ok(&["key", "delete", &id, "--yes"]);
    assert_eq!(kg.decide(&key, &p, &[]), "unknown key");
}

#[test]
fn a_flipped_signature_byte_is_denied() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let key = kg.key(&["--org", "acme", "--name", "x", "--all-projects"]);
    let id = key_id(&key);
    let db = crate::support::open_sled(&kg.path().join("db"));
    let keys = db.open_tree(schema::tree::KEYS).unwrap();
    let mut signed = schema::decode_signed(&keys.get(&id).unwrap().unwrap()).unwrap();
    signed.signature[10] ^= 0x01;
    keys.insert(id.as_bytes(), schema::encode_signed(&signed).unwrap())
        .unwrap();
    db.flush().unwrap();
    drop(keys);
    drop(db);
    assert_eq!(kg.decide(&key, &p, &[]), "record signature invalid");
}

#[test]
fn a_second_process_finds_the_store_locked() {
    let kg = Kg::new();
    kg.project("acme", "P");
    let db = crate::support::open_sled(&kg.path().join("db"));
    let err = kg.fail(&["key", "list", "--org", "acme"]);
    assert!(err.contains("in use by another keygate process"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    drop(db);
    kg.ok(&["key", "list", "--org", "acme"]);
}

#[test]
fn a_lock_released_quickly_is_waited_for() {
    let kg = Kg::new();
    kg.project("acme", "P");
    let db = crate::support::open_sled(&kg.path().join("db"));
    let child = kg
        .std_cmd()
        .args(["key", "list", "--org", "acme"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(db);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn wrong_secret_and_unknown_id_are_denied() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let key = kg.key(&["--org", "acme", "--name", "x", "--all-projects"]);
    // Same id, another secret, valid checksum.
    let forged = crate::support::same_id_other_secret(&key);
    assert_eq!(key_id(&forged), key_id(&key));
    assert_eq!(kg.decide(&forged, &p, &[]), "secret mismatch");
    // A key from another store: unknown here.
    let other = Kg::new();
    let foreign = other.key(&["--org", "acme", "--name", "y", "--all-projects"]);
    assert_eq!(kg.decide(&foreign, &p, &[]), "unknown key");
    // A typo is caught by the checksum.
    let mut typo = key.clone().into_bytes();
    let i = typo.len() - 10;
    typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
    assert_eq!(
        kg.decide(std::str::from_utf8(&typo).unwrap(), &p, &[]),
        "bad checksum"
    );
}

#[test]
fn the_issuer_key_can_live_outside_the_data_directory() {
    let kg = Kg::new();
    let secrets = tempfile::tempdir().unwrap();
    let issuer = secrets.path().join("issuer.key");
    let with_issuer = |args: &[&str]| {
        let mut a = vec!["--issuer-key", issuer.to_str().unwrap()];
        a.extend_from_slice(args);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| kg.cmd().args(&args).output().unwrap();
    let o = run(with_issuer(&["org", "create", "acme"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(with_issuer(&["project", "create", "--org", "acme", "P"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(issuer.exists());
    assert!(!kg.path().join("issuer.key").exists());
    // The environment variable works the same way.
    let o = kg
        .cmd()
        .env("KEYGATE_ISSUER_KEY", &issuer)
        .args([
            "key",
            "create",
            "--expires",
            "never",
            "--org",
            "acme",
            "--name",
            "k",
            "--all-projects",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let key = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let o = kg
        .cmd()
        .env("KEYGATE_ISSUER_KEY", &issuer)
        .args(["verify", "--project", &p])
        .write_stdin(key.clone())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    // Without it, the store cannot be used, and says where to look.
    let err = kg.fail(&["key", "list", "--org", "acme"]);
    assert!(
        err.contains("issuer key") && err.contains("--issuer-key"),
        "{err}"
    );
    // Another issuer key is refused: the trusted key comes from the secret,
    // never from the store.
    let other = Kg::new();
    other.project("acme", "X");
    let o = kg
        .cmd()
        .arg("--issuer-key")
        .arg(other.path().join("issuer.key"))
        .args(["key", "list", "--org", "acme"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("is not the issuer key this store was created with")
    );
}
