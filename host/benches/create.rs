//! Durable key creation: one commit per key against group commit, through
//! the library and through `keygate serve`.
//!
//! - library: `create_key` (one transaction, one flush and sync per key),
//!   then `create_keys` in batches of 16, 64 and 256 (one of each per batch);
//! - service: C client threads, each creating keys one request after the
//!   other over a keep-alive connection (`POST /v1/keys`) for a few seconds;
//!   the service commits whatever is queued when it takes the store, so the
//!   batch size follows the load. The mean batch comes from the service's
//!   own `keygate_key_creations_per_commit` histogram.
//!
//! Every figure counts only keys acknowledged after their commit was
//! flushed and synced. Run: `cargo bench -p keygate --bench create`
//! (`KEYGATE_CREATE_SECONDS` per service phase, default 5).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{Service, load_average};
use keygate::admin::{Access, KeySpec, Keygate, Location};
use keygate::runtime::bindings::ExpiryPolicy;

fn spec(i: usize) -> KeySpec {
    KeySpec {
        organization: Some("acme".into()),
        name: format!("key {i}"),
        access: Access::AllProjects,
        expiry: ExpiryPolicy::Days(30),
        scopes: vec!["trigger-workflows".into()],
    }
}

/// The sum and count of a histogram in the service's `/metrics`.
fn histogram(url: &str, name: &str) -> (f64, f64) {
    let text = ureq::get(format!("{url}/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let field = |suffix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_{suffix} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (field("sum"), field("count"))
}

fn main() {
    let seconds = std::env::var("KEYGATE_CREATE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5u64);
    println!(
        "== machine: {} cores; load average before: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let tmp = tempfile::tempdir().unwrap();
    let loc = Location::new(tmp.path().join("store"));
    let mut kg = Keygate::open(&loc, true).unwrap();
    let now = keygate::admin::now().unwrap();
    kg.create_organization("acme", None, now).unwrap();
    kg.create_project("acme", "billing", now).unwrap();

    // Library, one commit per key.
    let n = 300;
    let t = Instant::now();
    for i in 0..n {
        kg.create_key(spec(i), now).unwrap();
    }
    let single = n as f64 / t.elapsed().as_secs_f64();
    println!("library, one commit per key (create_key): {single:.0} keys/s ({n} keys)");

    // Library, group commit.
    for batch in [16usize, 64, 256] {
        let total = 4096;
        let t = Instant::now();
        for b in 0..total / batch {
            let specs = (0..batch).map(|i| spec(b * batch + i)).collect();
            for r in kg.create_keys(specs, now).unwrap() {
                r.unwrap();
            }
        }
        let rate = total as f64 / t.elapsed().as_secs_f64();
        println!(
            "library, create_keys in batches of {batch}: {rate:.0} keys/s ({total} keys; {:.1}× one per commit)",
            rate / single
        );
    }
    let token = kg
        .create_admin_token("bench", None, false, now)
        .unwrap()
        .expose_token()
        .to_string();
    drop(kg);

    let service = Service::start(&loc.dir);
    let url = service.url.clone();

    for clients in [1usize, 8, 32, 64] {
        let (sum0, count0) = histogram(&url, "keygate_key_creations_per_commit");
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let (stop, made, url, token) =
                    (stop.clone(), made.clone(), url.clone(), token.clone());
                std::thread::spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .build()
                        .into();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let r = agent
                            .post(format!("{url}/v1/keys"))
                            .header("Authorization", format!("Bearer {token}"))
                            .send_json(serde_json::json!({
                                "org": "acme",
                                "name": format!("client {c} key {i}"),
                                "access": "all-projects",
                                "expiry_days": 30,
                            }))
                            .unwrap();
                        assert_eq!(
                            r.status().as_u16(),
                            201,
                            "{:?}",
                            r.into_body().read_to_string()
                        );
                        made.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                })
            })
            .collect();
        let t = Instant::now();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        for th in threads {
            th.join().unwrap();
        }
        let elapsed = t.elapsed().as_secs_f64();
        let (sum1, count1) = histogram(&url, "keygate_key_creations_per_commit");
        let keys = made.load(Ordering::Relaxed);
        println!(
            "service, {clients} clients: {:.0} keys/s ({keys} keys; {:.1} keys per commit on average, {:.0} commits)",
            keys as f64 / elapsed,
            (sum1 - sum0) / (count1 - count0).max(1.0),
            count1 - count0,
        );
    }
    println!("== load average after: {}", load_average());
}
