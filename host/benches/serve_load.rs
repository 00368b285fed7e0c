//! Load against `keygate serve`: verify throughput and latency with `wrk`
//! (keep-alive connections, generator and service on the same machine),
//! then the same load with admin writes interleaved, then an RSS soak.
//!
//! Run: `KEYGATE_LOAD_KEYS=100000 cargo bench -p keygate --bench serve_load`
//! (default 1,000 keys; `KEYGATE_LOAD_SECONDS` per phase, default 10;
//! `KEYGATE_LOAD_SOAK` seconds of soak, default 0). Needs `wrk` on PATH
//! (`apt-get install wrk`). Prints one line per figure; the README quotes
//! them.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{Service, rss_kib};
use keygate::admin::{Access, KeySpec, Keygate, Location};
use keygate::runtime::bindings::ExpiryPolicy;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The wrk script: POST verify, a random key of the sample per request,
/// its own organization's project; prints percentiles in microseconds.
fn script(keys: &[(String, String)]) -> String {
    let mut s = String::from("local keys = {\n");
    for (k, p) in keys {
        s.push_str(&format!(
            "  {{\"Bearer {k}\", '{{\"project\":\"{p}\"}}'}},\n"
        ));
    }
    s.push_str(
        r#"}
local n = #keys
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % n + 1
  wrk.headers["Authorization"] = keys[i][1]
  return wrk.format(nil, "/v1/keys/verify", nil, keys[i][2])
end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT requests=%d seconds=%.3f p50=%d p90=%d p99=%d p999=%d max=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, errors, summary.errors.status))
end
"#,
    );
    s
}

fn wrk(url: &str, script: &std::path::Path, seconds: u64) -> String {
    let out = Command::new("wrk")
        .args(["-t1", "-c32", &format!("-d{seconds}s"), "-s"])
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk is needed: apt-get install wrk");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no result from wrk: {text}"))
        .to_string()
}

fn report(label: &str, result: &str) {
    let field = |name: &str| -> f64 {
        result
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    println!(
        "{label}: {:.0} verify/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; errors {}, non-2xx {}",
        field("requests") / field("seconds"),
        field("p50") / 1000.0,
        field("p90") / 1000.0,
        field("p99") / 1000.0,
        field("p999") / 1000.0,
        field("max") / 1000.0,
        field("errors"),
        field("non2xx"),
    );
}

fn main() {
    let n = env("KEYGATE_LOAD_KEYS", 1000) as usize;
    let seconds = env("KEYGATE_LOAD_SECONDS", 10);
    let soak = env("KEYGATE_LOAD_SOAK", 0);
    let tmp = tempfile::tempdir().unwrap();
    let loc = Location::new(tmp.path().join("store"));

    // The store: N org-level keys across N/100 organizations, one project
    // each, made through the library (each write committed and synced).
    let t = Instant::now();
    let mut kg = Keygate::open(&loc, true).unwrap();
    let now = keygate::admin::now().unwrap();
    let orgs = (n / 100).max(1);
    let mut projects = Vec::with_capacity(orgs);
    for o in 0..orgs {
        kg.create_organization(&format!("org{o}"), None, now)
            .unwrap();
        projects.push(kg.create_project(&format!("org{o}"), "p", now).unwrap().id);
    }
    let mut sample = Vec::new();
    let stride = (n / 1000).max(1);
    for i in 0..n {
        let org = i % orgs;
        let created = kg
            .create_key(
                KeySpec {
                    organization: Some(format!("org{org}")),
                    name: format!("key {i}"),
                    access: Access::AllProjects,
                    expiry: ExpiryPolicy::Never,
                    scopes: vec!["trigger-workflows".into()],
                },
                now,
            )
            .unwrap();
        if i % stride == 0 {
            sample.push((
                created.issued.expose_key().to_string(),
                projects[org].clone(),
            ));
        }
        if (i + 1) % 10_000 == 0 {
            eprintln!("  {} keys made", i + 1);
        }
    }
    let churn = kg
        .create_key(
            KeySpec {
                organization: Some("org0".into()),
                name: "churn".into(),
                access: Access::AllProjects,
                expiry: ExpiryPolicy::Never,
                scopes: vec!["trigger-workflows".into()],
            },
            now,
        )
        .unwrap()
        .view
        .id;
    let token = kg
        .create_admin_token("bench", None, false, now)
        .unwrap()
        .expose_token()
        .to_string();
    drop(kg);
    println!(
        "store: {n} keys across {orgs} organizations, made in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let service = Service::start(&loc.dir);
    let (url, pid) = (service.url.clone(), service.pid());
    let script_path = tmp.path().join("verify.lua");
    std::fs::write(&script_path, script(&sample)).unwrap();
    println!(
        "service: {url}, {} sampled keys; RSS after start {} MiB",
        sample.len(),
        rss_kib(pid) / 1024
    );

    // Warm-up, then the measured phase.
    wrk(&url, &script_path, 2);
    report("verify only", &wrk(&url, &script_path, seconds));

    // The same, with an admin write (disable or enable) every 50 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes, url, token, churn) = (
            stop.clone(),
            writes.clone(),
            url.clone(),
            token.clone(),
            churn.clone(),
        );
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut on = false;
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let verb = if on { "enable" } else { "disable" };
                on = !on;
                let t = Instant::now();
                let r = agent
                    .post(format!("{url}/v1/keys/{churn}/{verb}"))
                    .header("Authorization", format!("Bearer {token}"))
                    .send_json(serde_json::json!({}))
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200);
                worst = worst.max(t.elapsed());
                writes.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
            worst
        })
    };
    let mixed = wrk(&url, &script_path, seconds);
    stop.store(true, Ordering::Relaxed);
    let worst_write = writer.join().unwrap();
    report(
        &format!(
            "verify with {} admin writes interleaved (slowest write {:.1} ms)",
            writes.load(Ordering::Relaxed),
            worst_write.as_secs_f64() * 1000.0
        ),
        &mixed,
    );

    if soak > 0 {
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    samples.push(rss_kib(pid));
                    std::thread::sleep(Duration::from_secs(1));
                }
                samples
            })
        };
        let result = wrk(&url, &script_path, soak);
        done.store(true, Ordering::Relaxed);
        let samples = sampler.join().unwrap();
        report(&format!("soak {soak} s"), &result);
        let mib = |k: u64| k as f64 / 1024.0;
        println!(
            "soak RSS: first {:.1} MiB, last {:.1} MiB, max {:.1} MiB over {} samples",
            mib(samples[0]),
            mib(*samples.last().unwrap()),
            mib(*samples.iter().max().unwrap()),
            samples.len()
        );
    }
    drop(service);
}
