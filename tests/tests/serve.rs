//! `keygate serve`, driven over HTTP: the real binary on an ephemeral port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ureq::Agent;

use crate::support::Kg;

/// A running `keygate serve`; killed on drop if still running.
struct Server {
    child: Child,
    url: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    fn start(kg: &Kg, extra: &[&str]) -> Server {
        let mut child = kg
            .std_cmd()
            .args(["serve", "--listen", "127.0.0.1:0", "--validators", "2"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no listening line: {line:?} {}", stderr.lock().unwrap()))
            .to_string();
        Server { child, url, stderr }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM, then the exit code.
    fn stop(mut self) -> (i32, String) {
        let pid = self.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let code = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(50));
        (code, self.log())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// (status, JSON body or Null).
fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut r = r.unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

struct Client {
    agent: Agent,
    url: String,
}

impl Client {
    fn new(s: &Server) -> Client {
        Client {
            agent: agent(),
            url: s.url.clone(),
        }
    }

    fn get(&self, path: &str, token: &str) -> (u16, Value) {
        answer(
            self.agent
                .get(format!("{}{path}", self.url))
                .header("Authorization", format!("Bearer {token}"))
                .call(),
        )
    }

    fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        answer(
            self.agent
                .post(format!("{}{path}", self.url))
                .header("Authorization", format!("Bearer {token}"))
                .send_json(body),
        )
    }

    fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        answer(
            self.agent
                .delete(format!("{}{path}", self.url))
                .header("Authorization", format!("Bearer {token}"))
                .call(),
        )
    }

    /// The decision for `key` on `project`: "allow" or the deny reason.
    fn decide(&self, key: &str, project: &str) -> String {
        let (status, v) = self.post("/v1/keys/verify", key, json!({"project": project}));
        assert_eq!(status, 200, "{v}");
        if v["decision"] == "allow" {
            "allow".into()
        } else {
            v["reason"].as_str().unwrap().to_string()
        }
    }
}

fn token(kg: &Kg, args: &[&str]) -> String {
    let mut a = vec!["admin-token", "create"];
    a.extend_from_slice(args);
    kg.ok(&a).trim().to_string()
}

fn id_of(key: &str) -> &str {
    &key[3..14]
}

#[test]
fn the_key_lifecycle_over_http_holds_for_the_next_request() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let web = kg.project("acme", "web");
    let g = kg.project("globex", "crm");
    let cli_key = kg.key(&["--org", "acme", "--name", "cli", "--all-projects"]);
    let ops = token(&kg, &["--name", "ops"]);
    let s = Server::start(&kg, &[]);
    let c = Client::new(&s);

    // The decision has the CLI's --json fields.
    let (status, v) = c.post("/v1/keys/verify", &cli_key, json!({"project": p}));
    assert_eq!(status, 200);
    assert_eq!(
        (
            &v["decision"],
            &v["key_id"],
            &v["name"],
            &v["organization"],
            &v["project"],
            &v["action"]
        ),
        (
            &json!("allow"),
            &json!(id_of(&cli_key)),
            &json!("cli"),
            &json!("acme"),
            &json!(p),
            &json!("trigger-workflows")
        )
    );
    let (_, v) = c.post("/v1/keys/verify", &cli_key, json!({"project": g}));
    assert_eq!(
        (&v["decision"], &v["reason"], &v["class"]),
        (
            &json!("deny"),
            &json!("wrong-organization"),
            &json!("forbidden")
        )
    );

    // Create over HTTP: the key is in the answer once.
    let (status, created) = c.post(
        "/v1/keys",
        &ops,
        json!({"org": "acme", "name": "crm-sync", "access": [p], "expiry_days": 30}),
    );
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    assert_eq!(
        created["access"],
        json!({"all_projects": false, "projects": [p]})
    );
    assert_eq!(created["expiry_policy"], "30d");
    assert_eq!(c.decide(&key, &p), "allow");
    assert_eq!(c.decide(&key, &web), "project-not-granted");
    let (_, shown) = c.get(&format!("/v1/keys/{}", id_of(&key)), &ops);
    assert!(shown.get("key").is_none() && !shown.to_string().contains(&key[14..]));

    // Disable, enable, rotate, delete: each holds for the next request.
    let (status, v) = c.post(
        &format!("/v1/keys/{}/disable", id_of(&key)),
        &ops,
        json!({}),
    );
    assert_eq!((status, &v["changed"]), (200, &json!(true)));
    assert_eq!(c.decide(&key, &p), "disabled");
    c.post(&format!("/v1/keys/{}/enable", id_of(&key)), &ops, json!({}));
    assert_eq!(c.decide(&key, &p), "allow");
    let (status, rotated) = c.post(
        &format!("/v1/keys/{}/rotate", id_of(&key)),
        &ops,
        json!({"grace_seconds": 0}),
    );
    assert_eq!(status, 201, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_string();
    assert_eq!(rotated["rotated_from"], json!(id_of(&key)));
    assert_eq!(c.decide(&new_key, &p), "allow");
    assert_eq!(c.decide(&key, &p), "expired");
    let (status, _) = c.delete(&format!("/v1/keys/{}", id_of(&new_key)), &ops);
    assert_eq!(status, 200);
    assert_eq!(c.decide(&new_key, &p), "unknown-key");
    let (status, v) = c.get(&format!("/v1/keys/{}", id_of(&new_key)), &ops);
    assert_eq!((status, &v["error"]["code"]), (410, &json!("deleted")));

    // Projects.
    let (status, v) = c.post(
        "/v1/projects",
        &ops,
        json!({"org": "acme", "name": "later"}),
    );
    assert_eq!(status, 201);
    let later = v["id"].as_str().unwrap().to_string();
    assert_eq!(c.decide(&cli_key, &later), "allow");
    let (status, v) = c.delete(&format!("/v1/projects/{later}"), &ops);
    assert_eq!((status, &v["deleted_project"]["id"]), (200, &json!(later)));
    assert_eq!(c.decide(&cli_key, &later), "project-deleted");
    let (_, list) = c.get("/v1/projects?org=acme", &ops);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{list}");
    assert!(names.contains(&"billing") && names.contains(&"web"));

    // Every other deny reason a request can reach.
    assert_eq!(c.decide("kg_nope", &p), "malformed");
    let forged = crate::support::same_id_other_secret(&cli_key);
    assert_eq!(c.decide(&forged, &p), "secret-mismatch");
    // Another time than now is an operator's question: it needs an admin
    // token (a key holder must not have an expired key allowed by asking
    // about the past).
    let (status, v) = c.post("/v1/keys/verify", &cli_key, json!({"project": p, "at": 1}));
    assert_eq!(
        (status, &v["error"]["code"]),
        (401, &json!("unauthenticated"))
    );
    let v = answer(
        agent()
            .post(format!("{}/v1/keys/verify", s.url))
            .header("Authorization", format!("Bearer {cli_key}"))
            .header("Keygate-Admin-Token", &ops)
            .send_json(json!({"project": p, "at": 1})),
    )
    .1;
    assert_eq!(
        (&v["reason"], &v["at"]),
        (&json!("not-yet-valid"), &json!("1970-01-01T00:00:01Z"))
    );
    assert_eq!(c.decide(&cli_key, "prj_nosuchproject"), "unknown-project");
    let mut flipped = cli_key.clone().into_bytes();
    flipped[20] = if flipped[20] == b'a' { b'b' } else { b'a' };
    assert_eq!(
        c.decide(&String::from_utf8(flipped).unwrap(), &p),
        "bad-checksum"
    );

    // The audit log saw it all, with times in RFC 3339.
    let (_, audit) = c.get("/v1/audit?org=acme", &ops);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "key.create",
        "key.disable",
        "key.enable",
        "key.rotate",
        "key.delete",
        "project.delete",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }

    // Metrics count the decisions by reason.
    let (status, text) = {
        let mut r = agent().get(format!("{}/metrics", s.url)).call().unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    assert_eq!(status, 200);
    assert!(
        text.contains("keygate_decisions_total{result=\"deny\",reason=\"disabled\"} 1"),
        "{text}"
    );
    assert!(text.contains("keygate_verify_duration_seconds_count"));
    assert!(text.contains("keygate_store_sequence"));

    // SIGTERM: exit 0, the store is released, and the log never held a key
    // or a token.
    let (code, log) = s.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("\"message\":\"stopped\""), "{log}");
    for secret in [&cli_key, &key, &new_key, &ops] {
        assert!(!log.contains(&secret[14..]), "a secret reached the log");
    }
    let listed = kg.json(&["key", "list", "--org", "acme"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
}

#[test]
fn admin_tokens_reach_only_what_they_were_made_for() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let g = kg.project("globex", "crm");
    let api_key = kg.key(&["--org", "acme", "--name", "k", "--all-projects"]);
    let acme = token(&kg, &["--name", "acme-ci", "--org", "acme"]);
    let reader = token(&kg, &["--name", "auditor", "--read-only"]);
    let revoked = token(&kg, &["--name", "old"]);
    kg.ok(&["admin-token", "revoke", &revoked[8..19]]);
    let s = Server::start(&kg, &[]);
    let c = Client::new(&s);

    // An org token: its organization only.
    assert_eq!(c.get("/v1/keys", &acme).0, 200);
    assert_eq!(c.get("/v1/keys?org=acme", &acme).0, 200);
    let (status, v) = c.get("/v1/keys?org=globex", &acme);
    assert_eq!((status, &v["error"]["code"]), (403, &json!("forbidden")));
    // Ids of another organization are not confirmed to exist.
    let (status, v) = c.delete(&format!("/v1/projects/{g}"), &acme);
    assert_eq!((status, &v["error"]["code"]), (404, &json!("not-found")));
    assert_eq!(c.delete("/v1/projects/prj_AAAAAAAAAAA", &acme).0, 404);
    let (_, other_org_key) = c.get("/v1/keys?org=globex", &reader);
    assert_eq!(other_org_key.as_array().unwrap().len(), 0);
    let (status, v) = c.post(
        "/v1/keys",
        &acme,
        json!({"org": "acme", "name": "x", "access": [g]}),
    );
    assert_eq!((status, &v["error"]["code"]), (404, &json!("not-found")));
    assert_eq!(
        c.post(
            "/v1/keys",
            &acme,
            json!({"org": "globex", "name": "x", "access": "all-projects"})
        )
        .0,
        403
    );
    assert_eq!(c.get("/v1/snapshot", &acme).0, 403);
    // Organizations: an org token sees its own, and makes, changes and
    // deletes none (the deployment's); another's is not confirmed to exist.
    let (status, v) = c.get("/v1/orgs", &acme);
    assert_eq!(
        (status, v.as_array().unwrap().len(), &v[0]["slug"]),
        (200, 1, &json!("acme"))
    );
    assert_eq!(c.get("/v1/orgs", &reader).1.as_array().unwrap().len(), 2);
    assert_eq!(c.get("/v1/orgs/acme", &acme).0, 200);
    let (status, v) = c.get("/v1/orgs/globex", &acme);
    assert_eq!((status, &v["error"]["code"]), (404, &json!("not-found")));
    assert_eq!(c.get("/v1/orgs/nosuch", &acme).0, 404);
    for (status, v) in [
        c.post("/v1/orgs", &acme, json!({"slug": "initech"})),
        c.post(
            "/v1/orgs/acme/policy",
            &acme,
            json!({"require_expiry": false, "max_expiry_days": null}),
        ),
        c.delete("/v1/orgs/acme?cascade=true", &acme),
    ] {
        assert_eq!(
            (status, &v["error"]["code"]),
            (403, &json!("forbidden")),
            "{v}"
        );
    }
    assert_eq!(
        c.post("/v1/orgs", &reader, json!({"slug": "initech"})).0,
        403
    );
    let (status, created) = c.post(
        "/v1/keys",
        &acme,
        json!({"project": p, "name": "project-level"}),
    );
    assert_eq!((status, &created["level"]), (201, &json!("project")));

    // A read-only token reads everything and writes nothing.
    assert_eq!(c.get("/v1/keys?org=globex", &reader).0, 200);
    let (status, v) = c.post(
        &format!("/v1/keys/{}/disable", id_of(&api_key)),
        &reader,
        json!({}),
    );
    assert_eq!((status, &v["error"]["code"]), (403, &json!("forbidden")));
    assert_eq!(c.decide(&api_key, &p), "allow");

    // Revoked, garbled, missing, an API key, a token in the wrong scheme: 401.
    for bad in [revoked.as_str(), "kgadmin_nope", "", api_key.as_str()] {
        let (status, v) = c.get("/v1/keys?org=acme", bad);
        assert_eq!(
            (status, &v["error"]["code"]),
            (401, &json!("unauthenticated")),
            "{bad:?}"
        );
    }
    let r = agent()
        .get(format!("{}/v1/keys?org=acme", s.url))
        .header("Authorization", format!("Basic {acme}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers().get("www-authenticate").unwrap(),
        "Bearer realm=\"keygate\""
    );
    // Verification needs no admin token, and an admin token is no API key.
    assert_eq!(c.decide(&acme, &p), "unknown-key");
    let log = s.log();
    for secret in [&acme, &reader, &revoked, &api_key] {
        assert!(!log.contains(&secret[14..]), "a secret reached the log");
    }
}

#[test]
fn snapshots_over_http_have_etags_and_deltas_that_validators_take() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let key = kg.key(&["--org", "acme", "--name", "k", "--all-projects"]);
    let ops = token(&kg, &["--name", "ops"]);
    let reader = token(&kg, &["--name", "gateway", "--read-only"]);
    let issuer = kg.json(&["issuer", "show"]);
    let s = Server::start(&kg, &[]);
    let c = Client::new(&s);
    let get = |path: &str, etag: Option<&str>| {
        let mut req = agent()
            .get(format!("{}{path}", s.url))
            .header("Authorization", format!("Bearer {reader}"));
        if let Some(e) = etag {
            req = req.header("If-None-Match", e);
        }
        let mut r = req.call().unwrap();
        let status = r.status().as_u16();
        let etag = r
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = r.body_mut().read_to_vec().unwrap();
        (status, etag, bytes)
    };
    let (status, etag, full) = get("/v1/snapshot", None);
    assert_eq!(status, 200);
    let etag = etag.unwrap();
    let seq: u64 = etag.trim_matches('"').parse().unwrap();
    assert_eq!(get("/v1/snapshot", Some(&etag)).0, 304);
    assert_eq!(get(&format!("/v1/snapshot?since={seq}"), None).0, 204);
    assert_eq!(get(&format!("/v1/snapshot?since={}", seq + 1), None).0, 400);

    // A disable through the API: the delta since `seq` carries it.
    c.post(
        &format!("/v1/keys/{}/disable", id_of(&key)),
        &ops,
        json!({}),
    );
    let (status, etag2, delta) = get(&format!("/v1/snapshot?since={seq}"), None);
    assert_eq!(status, 200);
    assert_eq!(etag2.unwrap(), format!("\"{}-since-{seq}\"", seq + 1));

    // The files verify against the pinned issuer, and decide like the service.
    let m = &mut keygate::Runtime::new().unwrap().instantiate().unwrap();
    let trusted = keygate::runtime::bindings::IssuerKey {
        id: issuer["issuer_key_id"].as_str().unwrap().to_string(),
        public_key: hex::decode(issuer["public_key"].as_str().unwrap()).unwrap(),
    };
    let v = m.validator(&[trusted]).unwrap();
    m.validator_load_snapshot(v, &full).unwrap().unwrap();
    let allowed = m
        .validator_authorize(
            v,
            &key,
            &p,
            keygate::runtime::bindings::Scope::TriggerWorkflows,
            4_000_000_000,
        )
        .unwrap();
    assert!(matches!(
        allowed,
        keygate::runtime::bindings::Authorization::Allow(_)
    ));
    let info = m.validator_load_snapshot(v, &delta).unwrap().unwrap();
    assert_eq!((info.sequence, info.base), (seq + 1, Some(seq)));
    let denied = m
        .validator_authorize(
            v,
            &key,
            &p,
            keygate::runtime::bindings::Scope::TriggerWorkflows,
            4_000_000_000,
        )
        .unwrap();
    assert_eq!(
        denied,
        keygate::runtime::bindings::Authorization::Deny(
            keygate::runtime::bindings::DenyReason::Disabled
        )
    );
    assert_eq!(c.decide(&key, &p), "disabled");

    // Two more commits (a key created, the first one deleted): the delta
    // since `seq` merges the service's three commits, in order (the
    // deleted key leaves only its tombstone), without reading the store.
    let (status, created) = c.post(
        "/v1/keys",
        &ops,
        json!({"org": "acme", "name": "k2", "access": "all-projects", "expiry_days": 30}),
    );
    assert_eq!(status, 201, "{created}");
    let key2 = created["key"].as_str().unwrap().to_string();
    assert_eq!(c.delete(&format!("/v1/keys/{}", id_of(&key)), &ops).0, 200);
    let (status, _, merged) = get(&format!("/v1/snapshot?since={seq}"), None);
    assert_eq!(status, 200);
    let fresh = m.validator(&[trusted_key(&issuer)]).unwrap();
    m.validator_load_snapshot(fresh, &full).unwrap().unwrap();
    let info = m.validator_load_snapshot(fresh, &merged).unwrap().unwrap();
    assert_eq!(
        (info.sequence, info.base, info.keys, info.tombstones),
        (seq + 3, Some(seq), 1, 1)
    );
    let decide = |m: &mut keygate::Module, k: &str| match m
        .validator_authorize(
            fresh,
            k,
            &p,
            keygate::runtime::bindings::Scope::TriggerWorkflows,
            keygate::admin::now().unwrap() + 60,
        )
        .unwrap()
    {
        keygate::runtime::bindings::Authorization::Allow(_) => "allow".to_string(),
        keygate::runtime::bindings::Authorization::Deny(r) => format!("{r:?}"),
    };
    assert_eq!(decide(m, &key2), "allow");
    assert_eq!(decide(m, &key), "DenyReason::UnknownKey");
    // A base from before the service started: read from the store, and
    // it applies the same way on a validator holding that base.
    let (status, _, older) = get(&format!("/v1/snapshot?since={}", seq - 1), None);
    assert_eq!(status, 200);
    let info = m.validator_load_snapshot(fresh, &older);
    assert_eq!(
        info.unwrap(),
        Err(keygate::runtime::bindings::SnapshotError::BaseMismatch(
            Some(seq + 3)
        ))
    );
    let mut r = agent().get(format!("{}/metrics", s.url)).call().unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    for (source, n) in [("recent", 2), ("store", 1)] {
        let line = format!("keygate_snapshot_deltas_total{{source=\"{source}\"}} {n}");
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
}

fn trusted_key(issuer: &Value) -> keygate::runtime::bindings::IssuerKey {
    keygate::runtime::bindings::IssuerKey {
        id: issuer["issuer_key_id"].as_str().unwrap().to_string(),
        public_key: hex::decode(issuer["public_key"].as_str().unwrap()).unwrap(),
    }
}

#[test]
fn bad_requests_get_a_clear_status_and_the_service_keeps_serving() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let key = kg.key(&["--org", "acme", "--name", "k", "--all-projects"]);
    let ops = token(&kg, &["--name", "ops"]);
    let s = Server::start(&kg, &[]);
    let c = Client::new(&s);
    let raw = |path: &str, content_type: &str, body: &[u8], auth: &str| {
        answer(
            agent()
                .post(format!("{}{path}", s.url))
                .header("Authorization", auth)
                .header("Content-Type", content_type)
                .send(body),
        )
    };
    let bearer = format!("Bearer {key}");
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();

    let (st, v) = raw(
        "/v1/keys/verify",
        "text/plain",
        br#"{"project":"x"}"#,
        &bearer,
    );
    assert_eq!((st, code(&v)), (415, "unsupported-media-type".into()));
    let (st, v) = raw("/v1/keys/verify", "application/json", b"{not json", &bearer);
    assert_eq!((st, code(&v)), (400, "bad-body".into()));
    let (st, v) = raw(
        "/v1/keys/verify",
        "application/json",
        br#"{"project":"x","org":"acme"}"#,
        &bearer,
    );
    assert_eq!((st, code(&v)), (422, "bad-body".into()));
    let (st, v) = raw(
        "/v1/keys/verify",
        "application/json",
        format!(r#"{{"project":"{p}","action":"delete-everything"}}"#).as_bytes(),
        &bearer,
    );
    assert_eq!((st, code(&v)), (422, "unknown-scope".into()));
    let big = vec![b' '; 70 * 1024];
    let (st, _) = raw("/v1/keys/verify", "application/json", &big, &bearer);
    assert_eq!(st, 413);
    let (st, v) = raw(
        "/v1/keys/verify",
        "application/json",
        br#"{"project":"x"}"#,
        "",
    );
    assert_eq!((st, code(&v)), (401, "unauthenticated".into()));
    let (st, v) = c.get("/v1/nothing-here", &ops);
    assert_eq!((st, code(&v)), (404, "not-found".into()));
    // A policy rule broken through the API: the component's rule name.
    let (st, v) = c.post(
        "/v1/keys",
        &ops,
        json!({"org": "acme", "name": "", "access": "all-projects"}),
    );
    assert_eq!((st, code(&v)), (422, "name-empty".into()));
    let (st, v) = c.post(
        "/v1/keys",
        &ops,
        json!({"org": "acme", "name": "x", "access": "all-projects", "expiry_days": 200}),
    );
    assert_eq!((st, code(&v)), (422, "expiry-out-of-range".into()));
    // A key in a path is refused without being echoed.
    let (st, v) = c.get(&format!("/v1/keys/{key}"), &ops);
    assert_eq!(st, 400);
    assert!(!v.to_string().contains(&key[14..]));

    // A client that sends half a request and waits holds one connection,
    // not the service.
    let mut slow = TcpStream::connect(s.url.trim_start_matches("http://")).unwrap();
    slow.write_all(b"POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert_eq!(c.decide(&key, &p), "allow");

    // A thousand idle connections at once: the service keeps answering.
    let addr = s.url.trim_start_matches("http://").to_string();
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    assert_eq!(c.decide(&key, &p), "allow");
    drop(idle);

    // Nothing was written by any of it.
    let (_, keys) = c.get("/v1/keys?org=acme", &ops);
    assert_eq!(keys.as_array().unwrap().len(), 1);
    drop(slow);
    let (code, log) = s.stop();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn a_second_service_or_a_local_command_on_a_served_store_is_refused() {
    let kg = Kg::new();
    kg.project("acme", "billing");
    let s = Server::start(&kg, &[]);
    let o = kg
        .std_cmd()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let held = format!("is held by `keygate serve` at {}", s.url);
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains(&held), "{err}");
    let err = kg.fail(&["key", "list", "--org", "acme"]);
    assert!(err.contains(&held), "{err}");
    assert!(err.contains("--server URL"), "{err}");
    // The lock file is untrusted: anything but the service's own line is
    // ignored (here, written while the service holds the lock).
    for planted in [
        "keygate serve http://evil.example\n",
        "keygate serve http://203.0.113.66:80\n",
    ] {
        std::fs::write(kg.path().join("keygate.lock"), planted).unwrap();
        let err = kg.fail(&["key", "list", "--org", "acme"]);
        assert!(
            err.contains("is in use by another keygate process"),
            "{err}"
        );
    }
    let (code, _) = s.stop();
    assert_eq!(code, 0);
    kg.ok(&["key", "list", "--org", "acme"]);
}

#[test]
fn a_killed_service_loses_no_change_it_answered() {
    let kg = Kg::new();
    let seed_project = kg.project("acme", "seed");
    let ops = token(&kg, &["--name", "ops"]);
    let mut projects = Vec::new();
    let mut keys = Vec::new();
    let mut disabled = Vec::new();
    let mut tried = Vec::new();
    for round in 0..4u64 {
        let mut s = Server::start(&kg, &[]);
        let url = s.url.clone();
        let token = ops.clone();
        let writer = std::thread::spawn(move || {
            let agent = agent();
            // `None` once the service is gone.
            let post = |path: &str, body: Value| -> Option<(u16, Value)> {
                let mut r = agent
                    .post(format!("{url}{path}"))
                    .header("Authorization", format!("Bearer {token}"))
                    .send_json(body)
                    .ok()?;
                let status = r.status().as_u16();
                let v = serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()?;
                Some((status, v))
            };
            let (mut projects, mut keys, mut disabled, mut tried) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for i in 0u32.. {
                let name = format!("n{i}");
                let answered = match i % 3 {
                    0 => {
                        post("/v1/projects", json!({"org": "acme", "name": name})).map(|(st, v)| {
                            assert_eq!(st, 201, "{v}");
                            projects.push(v["id"].as_str().unwrap().to_string());
                        })
                    }
                    1 => post(
                        "/v1/keys",
                        json!({"org": "acme", "name": name, "access": "all-projects"}),
                    )
                    .map(|(st, v)| {
                        assert_eq!(st, 201, "{v}");
                        keys.push(v["key"].as_str().unwrap().to_string());
                    }),
                    _ => {
                        let Some(k) = keys.last().cloned() else {
                            continue;
                        };
                        tried.push(k.clone());
                        post(&format!("/v1/keys/{}/disable", id_of(&k)), json!({})).map(
                            |(st, v)| {
                                assert_eq!(st, 200, "{v}");
                                disabled.push(k);
                            },
                        )
                    }
                };
                if answered.is_none() {
                    break;
                }
            }
            (projects, keys, disabled, tried)
        });
        std::thread::sleep(Duration::from_millis(150 + 90 * round));
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        let (p, k, d, t) = match writer.join() {
            Ok(got) => got,
            Err(_) => panic!("the writer thread failed"),
        };
        projects.extend(p);
        keys.extend(k);
        disabled.extend(d);
        tried.extend(t);
    }
    println!(
        "answered before the kills: {} projects, {} keys, {} disables ({} sent)",
        projects.len(),
        keys.len(),
        disabled.len(),
        tried.len()
    );
    assert!(keys.len() >= 4, "too few writes answered to test anything");
    // Every change answered 2xx is in the store; a disable that was sent but
    // not answered may or may not have happened.
    let listed = kg.json(&["project", "list", "--org", "acme"]);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    for p in &projects {
        assert!(
            ids.contains(&p.as_str()),
            "project {p} was answered 201 but is gone"
        );
    }
    for k in &keys {
        let got = kg.decide(k, &seed_project, &[]);
        if disabled.contains(k) {
            assert_eq!(got, "key disabled", "key {}", id_of(k));
        } else if tried.contains(k) {
            assert!(
                got == "allow" || got == "key disabled",
                "key {}: {got}",
                id_of(k)
            );
        } else {
            assert_eq!(got, "allow", "key {}", id_of(k));
        }
    }
}

/// The sum and count of a histogram on `/metrics`.
fn histogram(url: &str, name: &str) -> (f64, f64) {
    let mut r = agent().get(format!("{url}/metrics")).call().unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    let field = |suffix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_{suffix} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name}_{suffix} in /metrics"))
    };
    (field("sum"), field("count"))
}

#[test]
fn group_commit_loses_no_acknowledged_key_when_the_service_is_killed() {
    let kg = Kg::new();
    let project = kg.project("acme", "billing");
    let ops = token(&kg, &["--name", "ops"]);
    let (mut acknowledged, mut keys_committed, mut commits) = (Vec::new(), 0.0, 0.0);
    for round in 0..3u64 {
        let mut s = Server::start(&kg, &[]);
        // Twelve clients creating keys as fast as they are answered: the
        // service commits whatever queued while it was flushing.
        let writers: Vec<_> = (0..12)
            .map(|c| {
                let (url, token) = (s.url.clone(), ops.clone());
                std::thread::spawn(move || {
                    let agent = agent();
                    let mut got = Vec::new();
                    for i in 0u32.. {
                        let Ok(mut r) = agent
                            .post(format!("{url}/v1/keys"))
                            .header("Authorization", format!("Bearer {token}"))
                            .send_json(json!({
                                "org": "acme",
                                "name": format!("r{round} c{c} k{i}"),
                                "access": "all-projects",
                            }))
                        else {
                            break;
                        };
                        let status = r.status().as_u16();
                        let Ok(text) = r.body_mut().read_to_string() else {
                            break;
                        };
                        let v: Value = serde_json::from_str(&text).unwrap();
                        assert_eq!(status, 201, "{v}");
                        got.push(v["key"].as_str().unwrap().to_string());
                    }
                    got
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + 150 * round));
        let (sum, count) = histogram(&s.url, "keygate_key_creations_per_commit");
        keys_committed += sum;
        commits += count;
        std::thread::sleep(Duration::from_millis(20 * round));
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        for w in writers {
            acknowledged.extend(w.join().unwrap());
        }
    }
    println!(
        "group commit: {} keys acknowledged; before the kills, {keys_committed} keys in {commits} commits",
        acknowledged.len()
    );
    assert!(
        keys_committed > commits,
        "no commit held more than one key ({keys_committed} keys, {commits} commits)"
    );
    assert!(
        acknowledged.len() >= 50,
        "too few keys answered to test anything"
    );
    // Every key answered 201 is in the store and allowed; the ones being
    // committed at the kill may or may not be, and no answer told anyone.
    let listed: Vec<String> = kg
        .json(&["key", "list", "--org", "acme"])
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect();
    for k in &acknowledged {
        assert!(
            listed.iter().any(|id| id == id_of(k)),
            "key {} was answered 201 but is gone",
            id_of(k)
        );
    }
    for k in acknowledged.iter().step_by(7) {
        assert_eq!(kg.decide(k, &project, &[]), "allow", "key {}", id_of(k));
    }
}

/// One side of the parity test: a local store, or a store behind a service.
struct Side<'a> {
    kg: &'a Kg,
    server: Option<(&'a str, &'a str)>,
    /// Values of this side (ids, keys) and the placeholder both sides share.
    names: Vec<(String, String)>,
}

impl Side<'_> {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let mut c = self.kg.cmd();
        c.env_remove("KEYGATE_ADMIN_TOKEN")
            .env_remove("KEYGATE_SERVER")
            .env("USER", "tester");
        if let Some((url, token)) = self.server {
            c.args(["--server", url]).env("KEYGATE_ADMIN_TOKEN", token);
        }
        c.args(args);
        if let Some(s) = stdin {
            c.write_stdin(s.to_string());
        }
        let o = c.output().unwrap();
        (
            o.status.code().unwrap(),
            self.norm(&String::from_utf8(o.stdout).unwrap()),
            self.norm(&String::from_utf8(o.stderr).unwrap()),
        )
    }

    fn name(&mut self, value: &str, placeholder: &str) {
        self.names
            .push((value.to_string(), placeholder.to_string()));
    }

    /// This side's ids, keys and times replaced by what both sides share.
    fn norm(&self, text: &str) -> String {
        let mut t = text.to_string();
        // Longest first: a key contains its id.
        let mut names = self.names.clone();
        names.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        for (v, p) in &names {
            t = t.replace(v.as_str(), p);
        }
        // Relative times ("in 30 days") can differ by one across a second.
        for unit in ["days", "day", "hours", "hour", "minutes", "minute"] {
            let mut parts: Vec<String> = Vec::new();
            for piece in t.split(&format!(" {unit}")) {
                parts.push(piece.to_string());
            }
            let last = parts.len().saturating_sub(1);
            for p in parts.iter_mut().take(last) {
                if let Some(i) = p.rfind("in ")
                    && p[i + 3..].bytes().all(|b| b.is_ascii_digit())
                    && p.len() > i + 3
                {
                    p.truncate(i + 3);
                    p.push('N');
                }
            }
            t = parts.join(&format!(" {unit}"));
        }
        let mut out = String::new();
        let mut rest = t.as_str();
        // RFC 3339 times: 2026-11-27T21:24:13Z.
        while let Some(i) = rest.find("20") {
            let cand = &rest[i..];
            if cand.len() >= 20
                && cand.as_bytes()[4] == b'-'
                && cand.as_bytes()[10] == b'T'
                && cand.as_bytes()[19] == b'Z'
            {
                out.push_str(&rest[..i]);
                out.push_str("<time>");
                rest = &cand[20..];
            } else {
                out.push_str(&rest[..i + 2]);
                rest = &cand[2..];
            }
        }
        out.push_str(rest);
        out
    }
}

/// Both sides, and the values of side a that side b calls otherwise.
struct Pair<'a> {
    a: Side<'a>,
    b: Side<'a>,
    subs: Vec<(String, String)>,
}

impl Pair<'_> {
    /// Side b's arguments: side a's, with a's ids and keys swapped for b's.
    fn args_b(&self, args: &[&str]) -> Vec<String> {
        args.iter()
            .map(|x| {
                let mut x = x.to_string();
                for (va, vb) in &self.subs {
                    x = x.replace(va.as_str(), vb);
                }
                x
            })
            .collect()
    }

    /// Run on both sides; outputs (normalised) and exit codes must match.
    fn step(&self, args: &[&str], key: Option<&str>) -> (i32, String, String) {
        let key_b = key.map(|k| self.args_b(&[k]).remove(0));
        let x = self.a.run(args, key);
        let bargs = self.args_b(args);
        let y = self.b.run(
            &bargs.iter().map(String::as_str).collect::<Vec<_>>(),
            key_b.as_deref(),
        );
        if args.contains(&"policy") {
            // The keys a policy denies are named in id order, and ids are
            // random: compare the set.
            let sorted = |t: &str| {
                let (head, ids) = t.split_once("): ").unwrap_or((t, ""));
                let mut ids: Vec<&str> = ids.trim_end().split(", ").collect();
                ids.sort();
                format!("{head}): {}", ids.join(", "))
            };
            assert_eq!(
                (x.0, &x.1, sorted(&x.2)),
                (y.0, &y.1, sorted(&y.2)),
                "keygate {args:?} differs"
            );
        } else if args.contains(&"list") {
            // Listings go in id order, and ids are random: compare the lines.
            let lines = |t: &str| {
                let mut l: Vec<String> = t.lines().map(str::to_string).collect();
                l.sort();
                l
            };
            assert_eq!(
                (x.0, lines(&x.1), &x.2),
                (y.0, lines(&y.1), &y.2),
                "keygate {args:?} differs"
            );
        } else {
            assert_eq!(x, y, "keygate {args:?} differs through the service");
        }
        x
    }

    /// Run a command that prints a new id or key on both sides, and name it.
    fn made(&mut self, args: &[&str], name: &str) -> String {
        let bargs = self.args_b(args);
        let x = self.a.run(args, None);
        let y = self
            .b
            .run(&bargs.iter().map(String::as_str).collect::<Vec<_>>(), None);
        assert_eq!((x.0, y.0), (0, 0), "keygate {args:?}: {} / {}", x.2, y.2);
        let (va, vb) = (x.1.trim().to_string(), y.1.trim().to_string());
        self.a.name(&va, name);
        self.b.name(&vb, name);
        if va.starts_with("kg_") {
            self.a.name(&va[3..14], &format!("{name}-id"));
            self.b.name(&vb[3..14], &format!("{name}-id"));
            self.subs
                .push((va[3..14].to_string(), vb[3..14].to_string()));
        }
        self.subs.push((va.clone(), vb));
        self.subs.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        assert_eq!(
            self.a.norm(&x.2),
            self.b.norm(&y.2),
            "keygate {args:?}: stderr differs"
        );
        va
    }
}

#[test]
fn the_cli_through_the_service_answers_like_the_cli_on_a_store() {
    let local = Kg::new();
    local.project("setup", "x");
    // The same admin writes on both sides, so audit sequences match.
    token(&local, &["--name", "ops"]);
    let served = Kg::new();
    served.project("setup", "x");
    let token = token(&served, &["--name", "ops"]);
    let s = Server::start(&served, &[]);
    let mut t = Pair {
        a: Side {
            kg: &local,
            server: None,
            names: Vec::new(),
        },
        b: Side {
            kg: &served,
            server: Some((&s.url, &token)),
            names: Vec::new(),
        },
        subs: Vec::new(),
    };
    // The audit log names who acted: the OS user here, the token there.
    t.a.name("os user tester", "<actor>");
    t.b.name(&format!("admin token {} (ops)", &token[8..19]), "<actor>");
    assert_eq!(
        t.step(&["org", "create", "acme", "--name", "Acme Corp"], None),
        (
            0,
            "acme\n".into(),
            "created organization acme (Acme Corp)\n".into()
        )
    );
    assert_eq!(t.step(&["--json", "org", "create", "globex"], None).0, 0);
    let p = t.made(&["project", "create", "--org", "acme", "billing"], "<P>");
    let g = t.made(&["project", "create", "--org", "globex", "crm"], "<G>");
    let k1 = t.made(
        &[
            "key",
            "create",
            "--org",
            "acme",
            "--name",
            "crm",
            "--all-projects",
            "--expires",
            "30d",
        ],
        "<K1>",
    );
    t.made(
        &[
            "key",
            "create",
            "--expires",
            "never",
            "--project",
            &p,
            "--name",
            "pk",
        ],
        "<K2>",
    );
    t.made(
        &[
            "key",
            "create",
            "--expires",
            "never",
            "--org",
            "acme",
            "--name",
            "sel",
            "--projects",
            &p,
        ],
        "<K3>",
    );
    let id1 = k1[3..14].to_string();
    for args in [
        vec!["key", "list", "--org", "acme"],
        vec!["--json", "key", "list", "--org", "acme"],
        vec!["key", "list", "--org", "acme", "--project", &p],
        vec!["key", "show", &id1],
        vec!["--json", "key", "show", &id1],
        vec!["project", "list", "--org", "acme"],
        vec!["--json", "project", "list", "--org", "acme"],
    ] {
        assert_eq!(t.step(&args, None).0, 0);
    }
    assert_eq!(t.step(&["verify", "--project", &p], Some(&k1)).0, 0);
    let (code, out, _) = t.step(&["verify", "--project", &g], Some(&k1));
    assert_eq!((code, out.as_str()), (1, "deny: wrong organization\n"));
    assert_eq!(
        t.step(&["--json", "verify", "--project", &g], Some(&k1)).0,
        1
    );
    assert_eq!(
        t.step(&["--json", "verify", "--project", &p], Some(&k1)).0,
        0
    );
    assert_eq!(
        t.step(&["verify", "--project", &p, "--at", "+31d"], Some(&k1))
            .1,
        "deny: key expired\n"
    );
    assert_eq!(t.step(&["verify", "--project", &p], Some("kg_nope")).0, 1);
    assert_eq!(t.step(&["key", "disable", &id1], None).0, 0);
    assert_eq!(t.step(&["--json", "key", "disable", &id1], None).0, 0);
    assert_eq!(
        t.step(&["verify", "--project", &p], Some(&k1)).1,
        "deny: key disabled\n"
    );
    assert_eq!(t.step(&["key", "enable", &id1], None).0, 0);
    // Organizations and their key policy, at creation and at use.
    for args in [
        vec!["org", "list"],
        vec!["--json", "org", "list"],
        vec!["org", "show", "acme"],
        vec!["--json", "org", "show", "acme"],
    ] {
        assert_eq!(t.step(&args, None).0, 0);
    }
    let (code, out, err) = t.step(
        &["org", "policy", "set", "acme", "--max-expiry", "7d"],
        None,
    );
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "organization acme: key policy is now expiry at most 7 days\n"
        )
    );
    assert!(
        err.starts_with("warning: 3 keys of acme break this policy"),
        "{err}"
    );
    assert_eq!(
        t.step(&["verify", "--project", &p], Some(&k1)).1,
        "deny: key lifetime exceeds the organization's key policy\n"
    );
    assert_eq!(
        t.step(&["org", "policy", "set", "acme", "--expiry-optional"], None)
            .0,
        0
    );
    assert_eq!(t.step(&["verify", "--project", &p], Some(&k1)).0, 0);
    t.made(&["key", "rotate", &id1, "--grace", "1h"], "<K4>");
    // Errors: the same line and exit code.
    for args in [
        vec!["key", "show", "AAAAAAAAAAA"],
        vec![
            "key",
            "create",
            "--org",
            "acme",
            "--name",
            "x",
            "--all-projects",
            "--expires",
            "200d",
        ],
        vec![
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
        vec![
            "key",
            "create",
            "--expires",
            "never",
            "--org",
            "globex",
            "--name",
            "x",
            "--projects",
            &p,
        ],
        vec!["project", "delete", "prj_AAAAAAAAAAA"],
        vec!["key", "rotate", &id1],
        vec!["org", "create", "acme"],
        vec!["org", "show", "acmee"],
        vec!["org", "delete", "acme", "--yes"],
        vec!["org", "policy", "set", "acme", "--max-expiry", "5d"],
        vec!["project", "create", "--org", "nosuch", "x"],
    ] {
        let (code, out, err) = t.step(&args, None);
        assert_eq!((code, out.as_str()), (2, ""), "{err}");
    }
    assert_eq!(t.step(&["audit", "--org", "globex"], None).0, 0);
    assert_eq!(
        t.step(&["--json", "project", "delete", &p, "--yes"], None)
            .0,
        0
    );
    assert_eq!(
        t.step(&["verify", "--project", &p], Some(&k1)).1,
        "deny: project deleted\n"
    );

    // A snapshot written through the service verifies like a local one.
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("through-the-service.kgs");
    let (code, _, err) =
        t.b.run(&["snapshot", "write", file.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    let issuer = t.b.run(&["--json", "issuer", "show"], None);
    let issuer: Value = serde_json::from_str(&issuer.1).unwrap();
    drop(s);
    assert_eq!(issuer, served.json(&["issuer", "show"]));
    let o = local
        .cmd()
        .args([
            "snapshot",
            "inspect",
            file.to_str().unwrap(),
            "--trust",
            issuer["public_key"].as_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn local_only_commands_refuse_server_and_a_missing_token_is_one_error_line() {
    let kg = Kg::new();
    kg.project("acme", "billing");
    let s = Server::start(&kg, &[]);
    for args in [
        vec!["init"],
        vec!["admin-token", "list"],
        vec!["migrate"],
        vec!["serve"],
    ] {
        let mut c = kg.cmd();
        let o = c.args(["--server", &s.url]).args(&args).output().unwrap();
        let err = String::from_utf8(o.stderr).unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            err.contains("works on a local store; it does not go through --server"),
            "{err}"
        );
    }
    let o = kg
        .cmd()
        .env_remove("KEYGATE_ADMIN_TOKEN")
        .args(["--server", &s.url, "key", "list", "--org", "acme"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(o.stderr).unwrap(),
        "error: no admin token: set KEYGATE_ADMIN_TOKEN (from `keygate admin-token create`)\n"
    );
    let o = kg
        .cmd()
        .args([
            "--server",
            "http://127.0.0.1:1",
            "key",
            "list",
            "--org",
            "acme",
        ])
        .env("KEYGATE_ADMIN_TOKEN", "kgadmin_x")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.starts_with("error: cannot reach the keygate service at http://127.0.0.1:1"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn the_delta_of_what_a_process_wrote_decides_like_the_stores_own_delta() {
    use keygate::admin::{Access, KeySpec, Keygate, Location};
    use keygate::runtime::bindings::{Authorization, DenyReason, ExpiryPolicy, KeyStatus, Scope};

    let dir = tempfile::tempdir().unwrap();
    let mut kg = Keygate::open(&Location::new(dir.path().join("s")), true).unwrap();
    let now = keygate::admin::now().unwrap();
    kg.create_organization("acme", None, now).unwrap();
    let p = kg.create_project("acme", "p", now).unwrap().id;
    let spec = |name: &str| KeySpec {
        organization: Some("acme".into()),
        name: name.into(),
        access: Access::AllProjects,
        expiry: ExpiryPolicy::Never,
        scopes: vec!["trigger-workflows".into()],
    };
    let stays = kg.create_key(spec("stays"), now).unwrap();
    let held = kg.sequence().unwrap();
    let full = kg.snapshot(now, None).unwrap();
    kg.keep_written(true);
    let added = kg.create_key(spec("added"), now).unwrap();
    kg.set_status(&stays.view.id, KeyStatus::Disabled, now)
        .unwrap();
    let gone = kg.create_key(spec("gone"), now).unwrap();
    kg.delete_key(&gone.view.id, now).unwrap();
    let written = kg
        .recent_delta(held, now)
        .unwrap()
        .expect("a delta of what was written");
    let scanned = kg.snapshot(now, Some(held)).unwrap();
    assert_eq!(written.info.sequence, scanned.info.sequence);
    assert_eq!((written.info.keys, written.info.tombstones), (2, 1));

    let decide = |delta: &[u8]| {
        let mut m = keygate::Runtime::new().unwrap().instantiate().unwrap();
        let v = m.validator(&[kg.issuer().trusted()]).unwrap();
        m.validator_load_snapshot(v, &full.bytes).unwrap().unwrap();
        m.validator_load_snapshot(v, delta).unwrap().unwrap();
        [&stays, &added, &gone].map(|c| {
            m.validator_authorize(
                v,
                c.issued.expose_key(),
                &p,
                Scope::TriggerWorkflows,
                now + 1,
            )
            .unwrap()
        })
    };
    let got = decide(&written.bytes);
    assert_eq!(got, decide(&scanned.bytes));
    assert_eq!(got[0], Authorization::Deny(DenyReason::Disabled));
    assert!(matches!(got[1], Authorization::Allow(_)));
    assert_eq!(got[2], Authorization::Deny(DenyReason::UnknownKey));

    // Nothing since the current sequence; a write that did not go through
    // this record (an admin token) leaves a gap, and then there is no
    // written delta.
    let held = kg.sequence().unwrap();
    assert!(kg.recent_delta(held, now).unwrap().is_none());
    kg.create_admin_token("t", None, false, now).unwrap();
    kg.set_status(&stays.view.id, KeyStatus::Active, now)
        .unwrap();
    assert!(kg.recent_delta(held, now).unwrap().is_none());
}

#[test]
fn connections_over_the_limit_are_closed_and_counted() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let key = kg.key(&["--org", "acme", "--name", "k", "--all-projects"]);
    let s = Server::start(&kg, &["--max-connections", "20"]);
    let addr = s.url.trim_start_matches("http://").to_string();
    let held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // The 21st is closed at once, without an answer.
    let mut extra = TcpStream::connect(&addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    assert!(
        matches!(extra.read(&mut buf), Ok(0) | Err(_)),
        "a connection over the limit was served"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let c = Client::new(&s);
    assert_eq!(c.decide(&key, &p), "allow");
    let text = agent()
        .get(format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let refused: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("keygate_refused_connections_total "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(refused >= 1, "{text}");
}

#[test]
fn a_flood_of_bad_credentials_gets_429_for_a_while() {
    let kg = Kg::new();
    kg.project("acme", "billing");
    let ops = token(&kg, &["--name", "ops"]);
    let s = Server::start(&kg, &[]);
    let c = Client::new(&s);
    for i in 0..30 {
        let (status, _) = c.get("/v1/keys?org=acme", "kgadmin_wrong");
        assert_eq!(status, 401, "attempt {i}");
    }
    let r = agent()
        .get(format!("{}/v1/keys?org=acme", s.url))
        .header("Authorization", format!("Bearer {ops}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let wait: u64 = r
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&wait), "{wait}");
    let (status, v) = c.get("/v1/keys?org=acme", &ops);
    assert_eq!(
        (status, &v["error"]["code"]),
        (429, &json!("too-many-failures"))
    );
}

#[test]
fn keys_and_tokens_in_names_ids_or_queries_are_refused_and_never_repeated() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let key = kg.key(&["--org", "acme", "--name", "k", "--all-projects"]);
    let ops = token(&kg, &["--name", "ops"]);
    let s = Server::start(&kg, &[]);
    let c = Client::new(&s);
    let secret = &key[14..];
    for (status, v) in [
        c.post("/v1/projects", &ops, json!({"org": "acme", "name": key})),
        c.post(
            "/v1/keys",
            &ops,
            json!({"org": "acme", "name": key, "access": "all-projects"}),
        ),
        c.post(
            "/v1/keys",
            &ops,
            json!({"org": "acme", "name": "x", "access": "all-projects", "scopes": [key]}),
        ),
        c.post(
            "/v1/keys",
            &ops,
            json!({"org": "acme", "name": "x", "access": [key]}),
        ),
        c.get(&format!("/v1/keys?org=acme&project={key}"), &ops),
        c.get(&format!("/v1/keys?org=acme&{key}=1"), &ops),
        c.delete(&format!("/v1/projects/{key}"), &ops),
        c.post(
            "/v1/projects",
            &ops,
            json!({"org": "acme", "name": "x", &key: 1}),
        ),
    ] {
        // 400, or 422 for an unknown body field.
        assert!(status == 400 || status == 422, "{status} {v}");
        assert!(!v.to_string().contains(secret), "echoed: {v}");
    }
    // A verify whose project is a key: decided (unknown project), not logged.
    let (_, v) = c.post("/v1/keys/verify", &key, json!({"project": key}));
    assert_eq!(v["reason"], "unknown-project");
    // The error shapes the HTTP stack makes are JSON too.
    let r = agent()
        .get(format!("{}/v1/keys/verify", s.url))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers().get("content-type").unwrap(), "application/json");
    let (code, log) = s.stop();
    assert_eq!(code, 0);
    assert!(!log.contains(secret), "a secret reached the log");
    assert!(log.contains("\"decision\":\"deny\""), "{log}");
    let listed = kg.json(&["key", "list", "--org", "acme"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(secret));
    let _ = p;
}

/// A stand-in for a service: answers every connection with the next canned
/// response (status line, JSON body).
fn fake_service(answers: Vec<(u16, String)>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for (status, body) in answers {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 65536];
            let _ = conn.set_read_timeout(Some(Duration::from_millis(300)));
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn the_remote_cli_does_not_believe_a_lying_service() {
    let kg = Kg::new();
    let view = |id: &str, name: &str| {
        json!({"id": id, "name": name, "organization": "acme", "level": "organization", "project": null,
               "scopes": ["trigger-workflows"], "access": "all-projects", "status": "active",
               "inactive_reason": null, "expiry_policy": "never", "expires_at": null,
               "created_at": "2026-01-01T00:00:00Z", "rotated_from": null, "rotated_to": null, "version": 1})
    };
    let run = |url: &str, args: &[&str]| {
        let o = kg
            .cmd()
            .env("KEYGATE_ADMIN_TOKEN", "kgadmin_x")
            .args(["--server", url])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    };
    // Terminal escapes in a name.
    let url = fake_service(vec![(
        200,
        view("AAAAAAAAAAA", "x\u{1b}]0;owned\u{7}").to_string(),
    )]);
    let (code, out, err) = run(&url, &["key", "show", "AAAAAAAAAAA"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(err.contains("control or invisible characters"), "{err}");
    // A "deletion" that names no deleted key.
    let url = fake_service(vec![
        (200, view("AAAAAAAAAAA", "x").to_string()),
        (200, r#"{"status":"ok"}"#.into()),
    ]);
    let (code, out, err) = run(&url, &["key", "delete", "AAAAAAAAAAA", "--yes"]);
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(err.contains("cannot read"), "{err}");
    // An answer about another key.
    let url = fake_service(vec![(200, view("BBBBBBBBBBB", "x").to_string())]);
    assert_eq!(run(&url, &["key", "show", "AAAAAAAAAAA"]).0, 2);
    // A "new key" that is not a key.
    let mut created = view("AAAAAAAAAAA", "x");
    created["key"] = json!("not-a-key");
    let url = fake_service(vec![(201, created.to_string())]);
    let (code, out, _) = run(
        &url,
        &[
            "key",
            "create",
            "--expires",
            "never",
            "--org",
            "acme",
            "--name",
            "x",
            "--all-projects",
        ],
    );
    assert_eq!((code, out.as_str()), (2, ""));
    // Credentials in the URL are refused before any connection.
    let (code, _, err) = run(
        "http://user:hunter2@127.0.0.1:1",
        &["key", "list", "--org", "acme"],
    );
    assert_eq!(code, 2);
    assert!(!err.contains("hunter2"), "{err}");
    // A key that cannot travel in a header is decided by the embedded
    // component, as locally: malformed.
    let o = kg
        .cmd()
        .args([
            "--server",
            "http://127.0.0.1:1",
            "verify",
            "--project",
            "prj_x",
        ])
        .write_stdin("kg_with space")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "deny: malformed key\n"
    );
}

#[test]
fn snapshot_write_can_pin_the_issuer_and_kgadmin_is_no_deployment_prefix() {
    let kg = Kg::new();
    kg.project("acme", "billing");
    let other = Kg::new();
    other.project("x", "y");
    let foreign = other.json(&["issuer", "show"]);
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("pinned.kgs");
    let err = kg.fail(&[
        "snapshot",
        "write",
        file.to_str().unwrap(),
        "--trust",
        foreign["public_key"].as_str().unwrap(),
    ]);
    assert!(err.contains("the snapshot was not written"), "{err}");
    assert!(!file.exists());
    let own = kg.json(&["issuer", "show"]);
    kg.ok(&[
        "snapshot",
        "write",
        file.to_str().unwrap(),
        "--trust",
        own["public_key"].as_str().unwrap(),
    ]);
    assert!(file.exists());
    let fresh = Kg::new();
    let err = fresh.fail(&["init", "--prefix", "kgadmin"]);
    assert!(err.contains("reserved for keygate's admin tokens"), "{err}");
}

#[test]
fn last_use_is_recorded_by_verify_and_by_the_service() {
    let kg = Kg::new();
    let p = kg.project("acme", "billing");
    let used = kg.key(&["--org", "acme", "--name", "used", "--all-projects"]);
    let idle = kg.key(&["--org", "acme", "--name", "idle", "--all-projects"]);
    let last = |key: &str| kg.json(&["key", "show", &key[3..14]])["last_used_at"].clone();
    // A deny and a question about another time are no use.
    assert_eq!(
        kg.decide(&used, "prj_nosuchproject", &[]),
        "unknown project"
    );
    assert_eq!(kg.decide(&used, &p, &["--at", "+1h"]), "allow");
    assert_eq!(last(&used), Value::Null);
    assert_eq!(kg.decide(&used, &p, &[]), "allow");
    assert!(last(&used).as_str().unwrap().ends_with('Z'));
    assert_eq!(last(&idle), Value::Null);
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["key", "list", "--org", "acme"];
        a.extend_from_slice(args);
        kg.json(&a)
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&["--unused-for", "0s", "--name", "idle"]), ["idle"]);
    assert!(
        names(&["--unused-for", "1h"]).is_empty(),
        "both were made or used within the hour"
    );

    // Through the service: recorded in memory, written in batches, and
    // seen by admin reads and after shutdown.
    let ops = token(&kg, &["--name", "ops"]);
    let s = Server::start(&kg, &[]);
    let c = Client::new(&s);
    assert_eq!(c.decide(&idle, &p), "allow");
    let (_, v) = c.get(&format!("/v1/keys/{}", &idle[3..14]), &ops);
    assert!(v["last_used_at"].as_str().unwrap().ends_with('Z'), "{v}");
    let (code, _) = s.stop();
    assert_eq!(code, 0);
    assert!(last(&idle).as_str().unwrap().ends_with('Z'));
}

#[test]
fn an_organization_token_ends_with_its_organization_and_a_rotation_can_change_expiry() {
    let kg = Kg::new();
    let p = kg.project("globex", "crm");
    let key = kg.key(&["--org", "globex", "--name", "k", "--all-projects"]);
    let ops = token(&kg, &["--name", "ops"]);
    let globex = token(&kg, &["--name", "globex-ci", "--org", "globex"]);
    let s = Server::start(&kg, &[]);
    let c = Client::new(&s);
    assert_eq!(c.get("/v1/orgs/globex", &globex).0, 200);
    // Over HTTP: a rotation with another expiry (null: never; absent: the
    // old key's).
    let (status, rotated) = c.post(
        &format!("/v1/keys/{}/rotate", id_of(&key)),
        &ops,
        json!({"grace_seconds": 0, "expiry_days": 7}),
    );
    assert_eq!(
        (status, &rotated["expiry_policy"]),
        (201, &json!("7d")),
        "{rotated}"
    );
    let (status, again) = c.post(
        &format!("/v1/keys/{}/rotate", rotated["id"].as_str().unwrap()),
        &ops,
        json!({"expiry_days": null}),
    );
    assert_eq!((status, &again["expiry_policy"]), (201, &json!("never")));
    assert_eq!(c.decide(again["key"].as_str().unwrap(), &p), "allow");
    let (status, v) = c.delete("/v1/orgs/globex?cascade=true", &ops);
    assert_eq!(
        (status, v["deleted_keys"].as_array().unwrap().len()),
        (200, 3)
    );
    // The organization's token is no token any more.
    let (status, v) = c.get("/v1/orgs/globex", &globex);
    assert_eq!(
        (status, &v["error"]["code"]),
        (401, &json!("unauthenticated"))
    );
    assert_eq!(c.get("/v1/keys", &globex).0, 401);
    assert_eq!(c.get("/v1/orgs/globex", &ops).0, 200);
}
