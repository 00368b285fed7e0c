//! Running the real `keygate` binary against a temporary data directory.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

/// The `keygate` binary of this build profile, built on first use if missing
/// (scripts/test.sh builds it beforehand).
pub fn keygate_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = option_env!("CARGO_BIN_EXE_keygate") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let bin = profile_dir.join(format!("keygate{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let mut cmd = std::process::Command::new(env!("CARGO"));
            cmd.args(["build", "-p", "keygate"]);
            if release {
                cmd.arg("--release");
            }
            assert!(
                cmd.status().unwrap().success(),
                "building the keygate binary failed"
            );
        }
        bin
    })
}

/// Named lists of (key, value) pairs: see [`Kg::store_dump`].
pub type StoreDump = Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)>;

/// A temporary keygate data directory.
pub struct Kg {
    path: PathBuf,
    _tmp: Option<TempDir>,
    /// Organizations this helper registered (see [`Kg::org`]).
    orgs: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Kg {
    /// A fresh, empty data directory.
    pub fn new() -> Kg {
        let tmp = tempfile::tempdir().unwrap();
        Kg {
            path: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
            orgs: Default::default(),
        }
    }

    /// A data directory at `path` (which the caller cleans up).
    pub fn at(path: PathBuf) -> Kg {
        Kg {
            path,
            _tmp: None,
            orgs: Default::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A command with `--data-dir` set and no inherited key.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(keygate_bin());
        c.env_remove("KEYGATE_KEY")
            .env_remove("KEYGATE_DATA_DIR")
            .arg("--data-dir")
            .arg(self.path());
        c
    }

    /// A plain `std::process::Command`, for spawning.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(keygate_bin());
        c.env_remove("KEYGATE_KEY")
            .env_remove("KEYGATE_DATA_DIR")
            .arg("--data-dir")
            .arg(self.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Run, expect success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "keygate {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Run with `--json`, expect success, parse stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// Run, expect exit 2 with an `error:` line; return stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let err = String::from_utf8(o.stderr).unwrap();
        assert_eq!(
            o.status.code(),
            Some(2),
            "keygate {args:?} should fail with 2; stderr: {err}"
        );
        assert!(
            err.starts_with("error: ") || err.contains("\nerror: "),
            "no error line for {args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    /// Register organization `org` unless this helper already did (an
    /// existing one is fine): keys and projects exist only in one.
    pub fn org(&self, org: &str) {
        if !self.orgs.borrow_mut().insert(org.to_string()) {
            return;
        }
        let o = self.run(&["org", "create", org]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() || err.contains("already exists"),
            "org create {org}: {err}"
        );
    }

    pub fn project(&self, org: &str, name: &str) -> String {
        self.org(org);
        self.ok(&["project", "create", "--org", org, name])
            .trim()
            .to_string()
    }

    /// Create a key; returns the key string.
    pub fn key(&self, args: &[&str]) -> String {
        if let Some(i) = args.iter().position(|a| *a == "--org")
            && let Some(org) = args.get(i + 1)
        {
            self.org(org);
        }
        let mut a = vec!["key", "create"];
        a.extend_from_slice(args);
        if !args.iter().any(|a| a.starts_with("--expires")) {
            a.extend_from_slice(&["--expires", "never"]);
        }
        let out = self.ok(&a);
        assert!(out.ends_with('\n') && out.lines().count() == 1, "{out:?}");
        out.trim_end().to_string()
    }

    /// `verify` with the key on stdin: (exit code, stdout, stderr).
    pub fn verify(&self, key: &[u8], project: &str, extra: &[&str]) -> (i32, String, String) {
        let mut a = vec!["verify", "--project", project];
        a.extend_from_slice(extra);
        let o = self
            .cmd()
            .args(&a)
            .write_stdin(key.to_vec())
            .output()
            .unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    }

    /// The deny reason, or "allow".
    pub fn decide(&self, key: &str, project: &str, extra: &[&str]) -> String {
        let (code, out, err) = self.verify(key.as_bytes(), project, extra);
        match code {
            0 => "allow".into(),
            1 => out.trim().strip_prefix("deny: ").unwrap().to_string(),
            _ => panic!("verify errored: {err}"),
        }
    }

    /// The admin write count, to check that failed commands changed nothing.
    pub fn audit_len(&self) -> usize {
        self.json(&["audit"]).as_array().unwrap().len()
    }

    /// The store's logical contents: every sled tree with every key and
    /// value, the issuer key file, and the names at the top of the data
    /// directory. Opens sled directly, so no keygate may be running.
    pub fn store_dump(&self) -> StoreDump {
        let mut out = Vec::new();
        let mut top: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        out.push((
            "top-level names".to_string(),
            vec![(top.join(",").into_bytes(), vec![])],
        ));
        if let Ok(k) = std::fs::read(self.path().join("issuer.key")) {
            out.push(("issuer.key".to_string(), vec![(vec![], k)]));
        }
        let db_path = self.path().join("db");
        if db_path.exists() {
            let db = open_sled(&db_path);
            let mut names = db.tree_names();
            names.sort();
            for name in names {
                let tree = db.open_tree(&name).unwrap();
                let kv = tree
                    .iter()
                    .map(|r| {
                        let (k, v) = r.unwrap();
                        (k.to_vec(), v.to_vec())
                    })
                    .collect();
                out.push((String::from_utf8_lossy(&name).into_owned(), kv));
            }
        }
        out
    }

    /// Every file under the data directory with its bytes.
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(p: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            for e in std::fs::read_dir(p).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), out);
                } else {
                    out.push((e.path(), std::fs::read(e.path()).unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        walk(self.path(), &mut out);
        out
    }
}

/// Open a store's sled database directly, as someone with write access to
/// the data directory could. No background flusher (as keygate itself), so
/// the database is closed, lock included, when the handle is dropped; a
/// lock still held by a keygate process that is exiting is waited for.
pub fn open_sled(path: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::Config::new().path(path).flush_every_ms(None).open() {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("cannot open {}: {e}", path.display()),
        }
    }
}

/// The key id inside a key string.
pub fn key_id(key: &str) -> String {
    let sep = key.find('_').unwrap();
    key[sep + 1..sep + 12].to_string()
}

/// A key with the same id as `key` (prefix `kg`), another secret and a
/// valid checksum: what a caller who knows only a key id could forge.
pub fn same_id_other_secret(key: &str) -> String {
    let id = &key[3..14];
    let n = id.bytes().fold(0u64, |n, c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' => c - b'A' + 10,
            _ => c - b'a' + 36,
        };
        n * 62 + u64::from(d)
    });
    let mut random = [0x5a_u8; 40];
    random[..8].copy_from_slice(&n.to_be_bytes());
    keygate_policy::make_key("kg", &random).unwrap().key
}

/// Run a `std::process::Command` with `input` on its stdin.
pub trait StdinPiped {
    /// Spawn with piped stdin, write `input`, and wait for the output.
    fn stdin_piped_with(&mut self, input: &str) -> PipedRun<'_>;
}

/// A command about to be run with some stdin.
pub struct PipedRun<'a> {
    cmd: &'a mut std::process::Command,
    input: String,
}

impl PipedRun<'_> {
    /// Run it.
    pub fn output(self) -> std::io::Result<Output> {
        use std::io::Write;
        let mut child = self
            .cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        // Give the program time to ask before the answer arrives.
        std::thread::sleep(std::time::Duration::from_millis(300));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.input.as_bytes())?;
        child.wait_with_output()
    }
}

impl StdinPiped for std::process::Command {
    fn stdin_piped_with(&mut self, input: &str) -> PipedRun<'_> {
        PipedRun {
            cmd: self,
            input: input.to_string(),
        }
    }
}
