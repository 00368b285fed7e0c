//! Planted files in the data directory, closed pipes, odd times and odd
//! text: found by attacking the release binary, fixed, and kept fixed here.
#![cfg(unix)]

use std::os::unix::fs::symlink;
use std::process::Stdio;

use crate::support::{Kg, key_id};

fn cache_file(kg: &Kg) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(kg.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

fn mkfifo(path: &std::path::Path) {
    assert!(
        std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn planted_symlinks_and_fifos_are_never_followed_or_waited_on() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let key = kg.key(&["--org", "acme", "--name", "k", "--all-projects"]);
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("precious");
    std::fs::write(&victim, b"do not touch").unwrap();

    // The cache file replaced by a symlink to another file: not read through,
    // and the rebuilt cache file replaces the link, not its target.
    let cwasm = cache_file(&kg);
    std::fs::remove_file(&cwasm).unwrap();
    symlink(&victim, &cwasm).unwrap();
    let (code, _, err) = kg.verify(key.as_bytes(), &p, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not a readable regular file"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"do not touch");
    assert!(!std::fs::symlink_metadata(&cwasm).unwrap().is_symlink());

    // A symlink to a device, and a FIFO, in its place: refused at once.
    for plant in ["device", "fifo"] {
        std::fs::remove_file(&cwasm).unwrap();
        match plant {
            "device" => symlink("/dev/zero", &cwasm).unwrap(),
            _ => mkfifo(&cwasm),
        }
        let (code, _, err) = kg.verify(key.as_bytes(), &p, &[]);
        assert_eq!(code, 0, "{plant}: {err}");
        assert!(err.contains("was not used"), "{plant}: {err}");
    }

    // The lock file as a symlink or a FIFO: one error line, nothing created
    // or written elsewhere, no hang.
    let lock = kg.path().join("keygate.lock");
    std::fs::remove_file(&lock).unwrap();
    let target = victim_dir.path().join("created-by-lock");
    symlink(&target, &lock).unwrap();
    let err = kg.fail(&["key", "list", "--org", "acme"]);
    assert!(err.contains("lock file"), "{err}");
    assert!(!target.exists());
    std::fs::remove_file(&lock).unwrap();
    mkfifo(&lock);
    let err = kg.fail(&["key", "list", "--org", "acme"]);
    assert!(err.contains("lock file"), "{err}");
    std::fs::remove_file(&lock).unwrap();
    assert_eq!(kg.decide(&key, &p, &[]), "allow");
}

/// Run keygate with a stdout whose reading end is already closed.
fn with_closed_stdout(kg: &Kg, args: &[&str], stdin: &str) -> (i32, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = kg
        .std_cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_closed_stdout_never_turns_a_deny_into_success() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let key = kg.key(&["--org", "acme", "--name", "k", "--all-projects"]);
    assert_eq!(
        with_closed_stdout(&kg, &["verify", "--project", &p], "garbage").0,
        1
    );
    assert_eq!(
        with_closed_stdout(&kg, &["--json", "verify", "--project", &p], "garbage").0,
        1
    );
    assert_eq!(
        with_closed_stdout(&kg, &["verify", "--project", &p], &key).0,
        0
    );
    // A key that cannot be shown once is an error, and says which key to delete.
    let (code, err) = with_closed_stdout(
        &kg,
        &[
            "key",
            "create",
            "--expires",
            "never",
            "--org",
            "acme",
            "--name",
            "lost",
            "--all-projects",
        ],
        "",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("could not be shown") && err.contains("key delete"),
        "{err}"
    );
    let (code, err) = with_closed_stdout(&kg, &["key", "rotate", &key_id(&key)], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("could not be shown"), "{err}");
}

#[test]
fn far_times_odd_text_and_empty_paths_get_one_error_line_or_an_answer() {
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let key = kg.key(&["--org", "acme", "--name", "k", "--all-projects"]);
    for at in ["@253402300800", "@18446744073709551615", "+999999999999d"] {
        let (code, out, err) = kg.verify(key.as_bytes(), &p, &["--json", "--at", at]);
        assert!((0..=2).contains(&code), "{at}: {out}{err}");
        assert!(!err.contains("panicked"), "{at}: {err}");
    }
    // The key never expires: allowed then, and the time is shown as given.
    let (code, out, _) = kg.verify(key.as_bytes(), &p, &["--json", "--at", "@253402300800"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["at"], "@253402300800");
    // Input with a newline or an escape sequence comes back escaped, on one line.
    for bad in ["abc\ndef", "x\u{1b}[31mred"] {
        let err = kg.fail(&["key", "show", bad]);
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(!err.contains('\u{1b}'), "{err:?}");
    }
    assert!(
        kg.fail(&["audit", "--org", "BAD ORG"])
            .contains("organization must be")
    );
    // An empty data directory is refused, never the default store instead.
    for args in [
        vec!["key", "list", "--org", "acme"],
        vec!["--data-dir=", "key", "list", "--org", "acme"],
    ] {
        let o = assert_cmd::Command::new(crate::support::keygate_bin())
            .env("KEYGATE_DATA_DIR", "")
            .env("HOME", kg.path())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("--data-dir"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn a_failed_first_command_removes_the_issuer_key_it_generated() {
    let kg = Kg::new();
    let secrets = tempfile::tempdir().unwrap();
    let issuer = secrets.path().join("issuer.key");
    let o = kg
        .cmd()
        .arg("--issuer-key")
        .arg(&issuer)
        .args([
            "key",
            "create",
            "--expires",
            "never",
            "--org",
            "acme",
            "--name",
            "",
            "--all-projects",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(!issuer.exists());
    assert_eq!(std::fs::read_dir(kg.path()).unwrap().count(), 0);
}

#[test]
fn keygate_never_follows_a_link_or_a_planted_file_among_its_own_names() {
    let outside = tempfile::tempdir().unwrap();
    // `db` as a link: refused, nothing written where it points.
    let kg = Kg::new();
    kg.project("acme", "P");
    std::fs::rename(kg.path().join("db"), outside.path().join("db")).unwrap();
    symlink(outside.path().join("db"), kg.path().join("db")).unwrap();
    let before = std::fs::read_dir(outside.path().join("db"))
        .unwrap()
        .count();
    let err = kg.fail(&["project", "list", "--org", "acme"]);
    assert!(err.contains("does not follow links"), "{err}");
    assert_eq!(
        std::fs::read_dir(outside.path().join("db"))
            .unwrap()
            .count(),
        before
    );
    // `cache` as a link: not used, nothing written where it points.
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let key = kg.key(&["--org", "acme", "--name", "k", "--all-projects"]);
    std::fs::remove_dir_all(kg.path().join("cache")).unwrap();
    let target = outside.path().join("cache-target");
    std::fs::create_dir(&target).unwrap();
    symlink(&target, kg.path().join("cache")).unwrap();
    let (code, _, err) = kg.verify(key.as_bytes(), &p, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not a directory keygate made"), "{err}");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    // `init.tmp` as a file, a FIFO or a dangling link: cleared, not followed.
    for plant in ["file", "fifo", "link"] {
        let path = kg.path().join("init.tmp");
        match plant {
            "file" => std::fs::write(&path, b"x").unwrap(),
            "fifo" => mkfifo(&path),
            _ => symlink(outside.path().join("nowhere"), &path).unwrap(),
        }
        assert_eq!(kg.decide(&key, &p, &[]), "allow", "{plant}");
        assert!(std::fs::symlink_metadata(&path).is_err(), "{plant}");
    }
    // The issuer key cannot be kept in keygate's own folders.
    let fresh = Kg::new();
    let inside = fresh.path().join("init.tmp").join("issuer.key");
    let o = fresh
        .cmd()
        .arg("--issuer-key")
        .arg(&inside)
        .args(["project", "create", "--org", "acme", "P"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("keygate's own folders"));
}

#[test]
fn a_failed_init_leaves_everything_as_it_was_found() {
    let parent = tempfile::tempdir().unwrap();
    let kg = Kg::at(parent.path().join("missing"));
    let issuer = parent.path().join("issuer.key");
    let o = kg
        .cmd()
        .arg("--issuer-key")
        .arg(&issuer)
        .args(["init", "--prefix", "BAD"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("key prefix `BAD`"));
    assert!(!issuer.exists());
    assert!(!kg.path().exists());
    // And an empty directory stays empty.
    std::fs::create_dir(kg.path()).unwrap();
    kg.fail(&["init", "--prefix", "x"]);
    assert_eq!(std::fs::read_dir(kg.path()).unwrap().count(), 0);
}

#[test]
fn no_key_is_made_when_stdout_is_closed() {
    let kg = Kg::new();
    kg.project("acme", "P");
    let before = kg.store_dump();
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" \"$@\" >&-")
        .arg(crate::support::keygate_bin())
        .arg("--data-dir")
        .arg(kg.path())
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
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("stdout is closed or /dev/null"), "{err}");
    assert!(kg.store_dump() == before, "a key was made");
}
