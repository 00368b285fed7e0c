//! keygate at 1k, 100k and 1M keys across 10,000 organizations: is every
//! per-request figure flat as the store grows?
//!
//! For each size, a fresh store is built through the library (10,000
//! organizations with one project each; `org0` gets exactly 100 keys, the
//! others share the rest; keys made by group commit, 512 per commit), then:
//!
//! - store size on disk (`db/`);
//! - `keygate verify` as a whole process, warm compile cache (median of 30);
//! - `keygate key list --org org0 --json`, 100 keys, as a process (median of 15);
//! - `keygate snapshot write`: time and file size; loading that file into
//!   the component's validator (time, guest memory);
//! - `keygate serve`: time until it listens, verify latency from one
//!   keep-alive client (median and p99 of 3,000 requests over 300 keys),
//!   and the service's resident memory after that.
//!
//! Run: `KEYGATE_SCALE_SIZES=1000,100000,1000000 cargo bench -p keygate --bench scale`
//! (default `1000,100000`; a million keys takes a few minutes to build and
//! about 2 GB of disk; `KEYGATE_SCALE_KEEP=DIR` leaves each store in
//! `DIR/store-N`). Prints one table row per size, as the README quotes.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Service, load_average, rss_kib};
use keygate::admin::{Access, KeySpec, Keygate, Location};
use keygate::runtime::bindings::{self as b, ExpiryPolicy};

const ORGS: usize = 10_000;
const BIN: &str = env!("CARGO_BIN_EXE_keygate");

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

/// One run of the keygate binary on `dir`, timed from spawn to exit.
fn timed(dir: &Path, args: &[&str], key: Option<&str>) -> (Duration, Vec<u8>) {
    let mut c = Command::new(BIN);
    c.arg("--data-dir").arg(dir).args(args);
    c.env_remove("KEYGATE_KEY").stdin(Stdio::null());
    if let Some(k) = key {
        c.env("KEYGATE_KEY", k);
    }
    let t = Instant::now();
    let out = c.output().unwrap();
    let took = t.elapsed();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, out.stdout)
}

struct Built {
    /// (key, its organization's project), sampled across the store.
    sample: Vec<(String, String)>,
    build: Duration,
}

fn build(loc: &Location, n: usize) -> Built {
    let t = Instant::now();
    let mut kg = Keygate::open(loc, true).unwrap();
    let now = keygate::admin::now().unwrap();
    let mut projects = Vec::with_capacity(ORGS);
    for o in 0..ORGS {
        kg.create_organization(&format!("org{o}"), None, now)
            .unwrap();
        projects.push(kg.create_project(&format!("org{o}"), "p", now).unwrap().id);
    }
    // org0: exactly 100 keys; the rest round-robin over org1..
    let org_of = |i: usize| {
        if i < 100 {
            0
        } else {
            1 + (i - 100) % (ORGS - 1)
        }
    };
    let stride = (n / 300).max(1);
    let mut sample = Vec::new();
    let mut i = 0;
    while i < n {
        let batch = (n - i).min(512);
        let specs = (i..i + batch)
            .map(|k| KeySpec {
                organization: Some(format!("org{}", org_of(k))),
                name: format!("key {k}"),
                access: Access::AllProjects,
                expiry: ExpiryPolicy::Days(90),
                scopes: vec!["trigger-workflows".into()],
            })
            .collect();
        for (k, created) in (i..).zip(kg.create_keys(specs, now).unwrap()) {
            let created = created.unwrap();
            if k % stride == 0 {
                sample.push((
                    created.issued.expose_key().to_string(),
                    projects[org_of(k)].clone(),
                ));
            }
        }
        i += batch;
        if i % 100_000 == 0 {
            eprintln!("  {i} keys");
        }
    }
    Built {
        sample,
        build: t.elapsed(),
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("KEYGATE_SCALE_SIZES")
        .unwrap_or_else(|_| "1000,100000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    println!(
        "== {} cores; load average before: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let mut rows = Vec::new();
    for n in sizes {
        let tmp = tempfile::tempdir().unwrap();
        // KEYGATE_SCALE_KEEP=DIR: build the store there and leave it (to
        // look at it afterwards); otherwise in a temporary directory.
        let loc = match std::env::var_os("KEYGATE_SCALE_KEEP") {
            Some(d) => Location::new(Path::new(&d).join(format!("store-{n}"))),
            None => Location::new(tmp.path().join("store")),
        };
        let built = build(&loc, n);
        let dir = loc.dir.clone();
        let db = dir_bytes(&dir.join("db"));
        let (key, project) = built.sample[built.sample.len() / 2].clone();

        // verify, warm cache (the first runs fill it).
        for _ in 0..3 {
            timed(&dir, &["verify", "--project", &project], Some(&key));
        }
        let verify = median(
            (0..30)
                .map(|_| timed(&dir, &["verify", "--project", &project], Some(&key)).0)
                .collect(),
        );
        let list = median(
            (0..15)
                .map(|_| {
                    let (t, out) = timed(&dir, &["key", "list", "--org", "org0", "--json"], None);
                    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
                    assert_eq!(v.as_array().unwrap().len(), 100);
                    t
                })
                .collect(),
        );
        let file = tmp.path().join("snapshot.kgs");
        let (snap_write, _) = timed(
            &dir,
            &["snapshot", "write", file.to_str().unwrap(), "--json"],
            None,
        );
        let bytes = std::fs::read(&file).unwrap();
        let issuer: serde_json::Value =
            serde_json::from_slice(&timed(&dir, &["issuer", "show", "--json"], None).1).unwrap();
        let rt = keygate::Runtime::new().unwrap();
        let mut m = rt.instantiate().unwrap();
        let v = m
            .validator(&[b::IssuerKey {
                id: issuer["issuer_key_id"].as_str().unwrap().to_string(),
                public_key: hex_decode(issuer["public_key"].as_str().unwrap()),
            }])
            .unwrap();
        let t = Instant::now();
        // In pieces of a megabyte, as `keygate serve` and the packages load it.
        let info = m
            .validator_load_snapshot_in_pieces(v, &bytes, 1 << 20)
            .unwrap()
            .unwrap();
        let snap_load = t.elapsed();
        assert_eq!(info.keys as usize, n);
        let guest_mib = m.linear_memory_bytes() as f64 / (1024.0 * 1024.0);
        drop(m);
        drop(rt);

        // The service.
        let t = Instant::now();
        let service = Service::start(&dir);
        let start = t.elapsed();
        let (url, pid) = (service.url.clone(), service.pid());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut lat = Vec::new();
        for r in 0..3_300 {
            let (k, p) = &built.sample[r % built.sample.len()];
            let t = Instant::now();
            let mut resp = agent
                .post(format!("{url}/v1/keys/verify"))
                .header("Authorization", format!("Bearer {k}"))
                .send_json(serde_json::json!({ "project": p }))
                .unwrap();
            let body = resp.body_mut().read_to_string().unwrap();
            if r >= 300 {
                lat.push(t.elapsed());
            }
            assert!(body.contains("\"allow\""), "{body}");
        }
        let rss = rss_kib(pid) as f64 / 1024.0;
        drop(service);
        let row = format!(
            "| {n} | {:.0} s | {:.1} MB | {} | {} | {} ({:.1} MB) | {} ({guest_mib:.0} MiB) | {} | {} / {} | {rss:.0} MiB |",
            built.build.as_secs_f64(),
            db as f64 / 1e6,
            ms(verify),
            ms(list),
            ms(snap_write),
            bytes.len() as f64 / 1e6,
            ms(snap_load),
            ms(start),
            ms(median(lat.clone())),
            ms(percentile(lat, 0.99)),
        );
        println!("{row}");
        rows.push(row);
    }
    println!("== load average after: {}", load_average());
    println!(
        "| keys | build (library, group commit) | store on disk | verify process (warm) | key list --org, 100 keys | snapshot write (file) | snapshot load, component (guest memory) | serve: start | serve: verify p50 / p99 | serve RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
