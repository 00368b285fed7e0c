//! SIGKILL at random moments: the store always opens again, and every key
//! whose secret was printed verifies.
#![cfg(unix)]

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{Kg, key_id};

/// A small xorshift generator; the seed is printed so a failure can be replayed
/// (`KEYGATE_CRASH_SEED`).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("KEYGATE_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        println!("crash test seed: {seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Start `args`, kill it with SIGKILL after `delay` unless it finished, and
/// return whether the kill hit a running process and what it printed.
fn run_and_kill(kg: &Kg, args: &[String], stdin: Option<&str>, delay: Duration) -> (bool, String) {
    let mut cmd = kg.std_cmd();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::null());
    match stdin {
        Some(key) => {
            cmd.env("KEYGATE_KEY", key).stdin(Stdio::null());
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    let mut child: Child = cmd.spawn().unwrap();
    std::thread::sleep(delay);
    let killed = matches!(child.try_wait(), Ok(None));
    if killed {
        child.kill().unwrap(); // SIGKILL
    }
    child.wait().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (killed, out)
}

/// The keys in a command's stdout (the one-time display prints a key alone on
/// a line).
fn printed_keys(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("kg_") && l.len() == 63)
        .map(str::to_string)
        .collect()
}

#[test]
fn random_kills_never_brick_the_store_or_lose_a_printed_key() {
    let kg = Kg::new();
    let project = kg.project("acme", "P");
    let victim = key_id(&kg.key(&["--org", "acme", "--name", "victim", "--all-projects"]));
    let mut rng = Rng::new();
    let mut printed: Vec<String> = Vec::new();
    let mut rotatable: Vec<String> = Vec::new();
    let (mut kills, mut runs, mut failed_opens) = (0u32, 0u32, 0u32);
    let mut failures = Vec::new();
    let started = Instant::now();
    let budget = Duration::from_secs(120);
    while kills < 240 && started.elapsed() < budget {
        runs += 1;
        let delay = Duration::from_micros(rng.below(30_000));
        let (args, stdin): (Vec<String>, Option<String>) = match rng.below(4) {
            0 => (
                [
                    "key",
                    "create",
                    "--expires",
                    "never",
                    "--org",
                    "acme",
                    "--name",
                    &format!("k{runs}"),
                    "--all-projects",
                ]
                .map(String::from)
                .to_vec(),
                None,
            ),
            1 if !rotatable.is_empty() => {
                let i = rng.below(rotatable.len() as u64) as usize;
                let id = rotatable.swap_remove(i);
                (
                    ["key", "rotate", &id, "--grace", "7d"]
                        .map(String::from)
                        .to_vec(),
                    None,
                )
            }
            2 => {
                let verb = if rng.below(2) == 0 {
                    "disable"
                } else {
                    "enable"
                };
                (["key", verb, &victim].map(String::from).to_vec(), None)
            }
            _ if !printed.is_empty() => {
                // A write, then a verify started right after it.
                kg.ok(&["project", "create", "--org", "acme", &format!("p{runs}")]);
                let key = printed[rng.below(printed.len() as u64) as usize].clone();
                (
                    ["verify", "--project", &project].map(String::from).to_vec(),
                    Some(key),
                )
            }
            _ => continue,
        };
        let (killed, out) = run_and_kill(&kg, &args, stdin.as_deref(), delay);
        if killed {
            kills += 1;
        }
        if args[0] == "key" {
            for k in printed_keys(&out) {
                rotatable.push(key_id(&k));
                printed.push(k);
            }
        }
        // After every kill the store opens and reads.
        let o = kg.run(&["key", "list", "--org", "acme"]);
        if !o.status.success() {
            failed_opens += 1;
            failures.push(String::from_utf8_lossy(&o.stderr).into_owned());
        }
    }
    let mut allowed = 0;
    let mut denied = Vec::new();
    for k in &printed {
        match kg.decide(k, &project, &[]).as_str() {
            "allow" => allowed += 1,
            other => denied.push((key_id(k), other.to_string())),
        }
    }
    println!(
        "crash test: {runs} runs, {kills} SIGKILLs of running processes, {} printed keys, {allowed} allowed, {failed_opens} failed opens, {:.1} s",
        printed.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        failed_opens, 0,
        "the store did not open after a kill: {failures:?}"
    );
    assert!(
        denied.is_empty(),
        "printed keys that do not verify: {denied:?}"
    );
    assert!(kills >= 200, "only {kills} kills hit a running process");
    assert!(
        printed.len() >= 20,
        "only {} keys were printed",
        printed.len()
    );
}

#[test]
fn a_kill_during_the_first_command_never_leaves_a_refused_directory() {
    let parent = tempfile::tempdir().unwrap();
    let mut rng = Rng::new();
    let (mut kills, mut printed, mut allowed) = (0, 0, 0);
    for i in 0..40 {
        // Half into a missing directory, half into an existing empty one.
        let kg = Kg::at(parent.path().join(format!("store{i}")));
        if i % 2 == 0 {
            std::fs::create_dir(kg.path()).unwrap();
        }
        let delay = Duration::from_micros(rng.below(150_000));
        let args = [
            "key",
            "create",
            "--expires",
            "never",
            "--org",
            "acme",
            "--name",
            "first",
            "--all-projects",
        ]
        .map(String::from);
        let (killed, out) = run_and_kill(&kg, &args, None, delay);
        if killed {
            kills += 1;
        }
        // Whatever the kill left, the next commands work.
        let p = kg.project("acme", "P");
        kg.ok(&["key", "list", "--org", "acme"]);
        for k in printed_keys(&out) {
            printed += 1;
            assert_eq!(kg.decide(&k, &p, &[]), "allow");
            allowed += 1;
        }
    }
    println!(
        "first-command kills: {kills} of 40 runs killed mid-way, {printed} keys printed, {allowed} allowed"
    );
    assert!(
        kills >= 20,
        "only {kills} kills hit a running first command"
    );
}

#[test]
fn an_unfinished_sled_snapshot_is_cleared_before_opening() {
    // What a SIGKILL while sled writes its snapshot leaves behind: a
    // zero-length `snap.*.generating` newer than the last snapshot, which
    // sled 0.34 reads back as corruption (spacejam/sled#1527).
    let kg = Kg::new();
    let p = kg.project("acme", "P");
    let key = kg.key(&["--org", "acme", "--name", "k", "--all-projects"]);
    let leftover = kg
        .path()
        .join("db")
        .join("snap.FFFFFFFFFFFFFFF0.generating");
    std::fs::write(&leftover, b"").unwrap();
    assert_eq!(kg.decide(&key, &p, &[]), "allow");
    assert!(!leftover.exists());
    kg.ok(&["key", "list", "--org", "acme"]);
}

#[test]
fn keygate_s_own_leftovers_are_an_empty_directory_not_a_foreign_one() {
    // Every state an interrupted first command can leave (build in
    // `init.tmp/`, then rename): the next command initialises the store.
    let parent = tempfile::tempdir().unwrap();
    let layouts: [&[&str]; 5] = [
        &["keygate.lock"],
        &["cache/"],
        &["keygate.lock", "cache/", "init.tmp/"],
        &["init.tmp/", "init.tmp/db/", "init.tmp/issuer.key"],
        &["keygate.lock", "init.tmp/"],
    ];
    for (i, layout) in layouts.iter().enumerate() {
        let kg = Kg::at(parent.path().join(format!("s{i}")));
        std::fs::create_dir(kg.path()).unwrap();
        for entry in *layout {
            let path = kg.path().join(entry.trim_end_matches('/'));
            if entry.ends_with('/') {
                std::fs::create_dir_all(path).unwrap();
            } else {
                std::fs::write(path, b"half").unwrap();
            }
        }
        assert!(
            kg.fail(&["key", "list", "--org", "acme"])
                .contains("no keygate store"),
            "{layout:?}"
        );
        let p = kg.project("acme", "P");
        let key = kg.key(&["--org", "acme", "--name", "k", "--all-projects"]);
        assert_eq!(kg.decide(&key, &p, &[]), "allow", "{layout:?}");
        assert!(!kg.path().join("init.tmp").exists());
    }
    // An issuer key installed just before the kill (no `db/` yet) is reused,
    // not replaced: it is the one the new store is signed with.
    let kg = Kg::at(parent.path().join("with-issuer"));
    let donor = Kg::new();
    donor.project("acme", "P");
    std::fs::create_dir(kg.path()).unwrap();
    let donor_key = std::fs::read(donor.path().join("issuer.key")).unwrap();
    std::fs::write(kg.path().join("issuer.key"), &donor_key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        kg.path().join("issuer.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    kg.project("acme", "P");
    assert_eq!(
        kg.json(&["issuer", "show"])["issuer_key_id"],
        donor.json(&["issuer", "show"])["issuer_key_id"]
    );
    // Anything keygate did not write makes the directory foreign.
    let other = Kg::at(parent.path().join("foreign"));
    std::fs::create_dir(other.path()).unwrap();
    std::fs::write(other.path().join("cache.txt"), b"mine").unwrap();
    assert!(
        other
            .fail(&["project", "create", "--org", "acme", "P"])
            .contains("not a keygate data directory")
    );
}
