//! The API Keys page in a real browser: headless Chromium driven over
//! WebDriver (Debian's `chromium` and `chromium-driver`, which `.ci/run`
//! installs) against `keygate serve`. Each step leaves a screenshot in
//! `target/page-screenshots/` (an artifact, not committed).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::Kg;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Kills a child process when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `keygate serve` on an ephemeral port: its URL, and the sign-in link it
/// printed, if it made a first-run token.
fn serve(kg: &Kg) -> (Killed, String, Option<String>) {
    let mut child = kg
        .std_cmd()
        .args(["serve", "--listen", "127.0.0.1:0", "--validators", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    // Read the sign-in line without blocking forever: it is printed right
    // after the address, or never.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
    });
    let link = rx
        .recv_timeout(Duration::from_millis(1500))
        .ok()
        .and_then(|l| l.strip_prefix("sign in: ").map(str::to_string));
    (Killed(child), url, link)
}

async fn browser(dir: &std::path::Path) -> (Killed, Client) {
    let port = free_port();
    let driver = Killed(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) is needed for the page tests"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,800",
                format!("--user-data-dir={}", dir.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session in headless Chromium");
    (driver, client)
}

struct Page {
    c: Client,
    shots: PathBuf,
    n: u32,
}

impl Page {
    async fn shot(&mut self, name: &str) {
        self.n += 1;
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{:02}-{name}.png", self.n)), png).unwrap();
    }

    async fn js(&self, script: &str) -> Value {
        self.c.execute(script, vec![]).await.unwrap()
    }

    async fn click(&self, css: &str) {
        self.c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn typed(&self, css: &str, text: &str) {
        let e = self.c.find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    /// Wait until a script returns true.
    async fn until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.js(script).await == json!(true) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The visible text of the keys table's row for `name`, or null.
    async fn key_row(&self, name: &str) -> Value {
        self.js(&format!(
            "for (const tr of document.querySelectorAll('#keys-body tr')) {{ if (tr.querySelector('.name').textContent === {}) return tr.innerText; }} return null;",
            json!(name)
        ))
        .await
    }

    /// Everything a page keeps where a key could linger.
    async fn everything(&self) -> String {
        self.js(
            "return [document.documentElement.outerHTML, JSON.stringify(Object.entries(localStorage)), JSON.stringify(Object.entries(sessionStorage)), document.cookie, location.href].join('\\n');",
        )
        .await
        .as_str()
        .unwrap()
        .to_string()
    }
}

/// `keygate verify` through the service (which holds the store): "allow"
/// or the deny reason.
fn verify(kg: &Kg, url: &str, key: &str, project: &str) -> String {
    let o = kg
        .std_cmd()
        .args(["--server", url, "--json", "verify", "--project", project])
        .env("KEYGATE_KEY", key)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
    if v["decision"] == "allow" {
        assert_eq!(o.status.code(), Some(0));
        "allow".into()
    } else {
        assert_eq!(o.status.code(), Some(1));
        v["reason"].as_str().unwrap().to_string()
    }
}

fn shots_dir(test: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/page-screenshots")
        .join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The README's first command on a fresh store: `keygate serve` prints a
/// sign-in link once; opening it signs in and takes the token out of the
/// address bar; the page works offline (only its own origin).
#[tokio::test(flavor = "current_thread")]
async fn the_first_run_link_signs_in_and_leaves_no_token_behind() {
    let kg = Kg::new();
    let (_server, url, link) = serve(&kg);
    let link = link.expect("a first run prints a sign-in link");
    assert!(
        link.starts_with(&format!("{url}/#token=kgadmin_")),
        "{link}"
    );
    let token = link.split("#token=").nth(1).unwrap().to_string();
    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = browser(profile.path()).await;
    let mut p = Page {
        c,
        shots: shots_dir("first-run"),
        n: 0,
    };
    p.c.goto(&link).await.unwrap();
    p.until(
        "the app view",
        "return !document.getElementById('app-view').hidden",
    )
    .await;
    p.shot("signed-in-no-organization").await;
    assert_eq!(p.js("return location.href").await, json!(format!("{url}/")));
    assert!(!p.everything().await.contains(&token));
    let notice = p.text("#notice").await;
    assert!(
        notice.contains("No organization yet: create one with `keygate org create SLUG`")
            && notice.contains("revoke this one: its link stays in this browser's history"),
        "{notice}"
    );
    // Resources: every one from this origin (the page works offline).
    let origins = p
        .js("return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
        .await;
    for o in origins.as_array().unwrap() {
        assert_eq!(o, &json!(url));
    }
    // The cookie alone reveals nothing (another service on another port of
    // this host receives it too): the session answers only with its CSRF
    // token, which the tab keeps in sessionStorage and a reload finds.
    assert_eq!(
        p.js("return fetch('/v1/session').then(r => r.json())")
            .await,
        json!({"session": null})
    );
    p.c.refresh().await.unwrap();
    p.until(
        "the app view after a reload",
        "return !document.getElementById('app-view').hidden && document.getElementById('who').textContent.length > 0",
    )
    .await;
    // Signing out ends the session: the cookie no longer works.
    p.click("#sign-out").await;
    p.until(
        "the sign-in view",
        "return !document.getElementById('signin-view').hidden",
    )
    .await;
    let after = p
        .js("return fetch('/v1/session', {headers: {'X-Keygate-CSRF': sessionStorage.getItem('keygate.csrf') || 'x'}}).then(r => r.json())")
        .await;
    assert_eq!(after, json!({"session": null}));
    p.c.clone().close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_person_manages_keys_and_projects_from_the_browser() {
    let kg = Kg::new();
    kg.org("acme");
    let globex_project = kg.project("globex", "globex-web");
    let globex_key = kg.key(&["--org", "globex", "--name", "globex-crm", "--all-projects"]);
    let ops = kg
        .ok(&["admin-token", "create", "--name", "ops"])
        .trim()
        .to_string();
    let globex_token = kg
        .ok(&[
            "admin-token",
            "create",
            "--name",
            "globex-ci",
            "--org",
            "globex",
        ])
        .trim()
        .to_string();
    let (_server, url, link) = serve(&kg);
    assert!(link.is_none(), "a store with admin tokens prints no link");
    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = browser(profile.path()).await;
    let mut p = Page {
        c,
        shots: shots_dir("keys-and-projects"),
        n: 0,
    };

    // Sign in with the form (a wrong token first).
    p.c.goto(&format!("{url}/")).await.unwrap();
    p.until(
        "the sign-in view",
        "return !document.getElementById('signin-view').hidden",
    )
    .await;
    p.typed("#signin-token", "kgadmin_nope").await;
    p.click("#signin-form button[type=submit]").await;
    p.until(
        "the sign-in error",
        "return document.getElementById('signin-error').textContent.length > 0",
    )
    .await;
    p.shot("sign-in-refused").await;
    p.typed("#signin-token", &ops).await;
    p.click("#signin-form button[type=submit]").await;
    p.until(
        "the app view",
        "return !document.getElementById('app-view').hidden",
    )
    .await;
    // The empty state says what to do.
    p.until(
        "the empty state",
        "return !document.getElementById('keys-empty').hidden",
    )
    .await;
    assert!(p.text("#keys-empty").await.contains("No API keys yet"));
    p.shot("empty-state").await;

    // By keyboard: Enter on a focused button opens the dialog (focus in
    // its first field), Escape closes it and focus returns to the button.
    p.js("document.getElementById('create-key-empty').focus(); return true")
        .await;
    p.c.active_element()
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    p.until(
        "the create dialog",
        "return document.getElementById('create-dialog').open",
    )
    .await;
    assert_eq!(
        p.js("return document.activeElement.id").await,
        json!("key-name")
    );
    p.c.active_element()
        .await
        .unwrap()
        .send_keys("\u{E00C}")
        .await
        .unwrap();
    p.until(
        "the dialog closed",
        "return !document.getElementById('create-dialog').open",
    )
    .await;
    assert_eq!(
        p.js("return document.activeElement.id").await,
        json!("create-key-empty")
    );
    // Projects: create two.
    p.click("#tab-projects").await;
    for name in ["billing", "web"] {
        p.typed("#project-name", name).await;
        p.click("#project-form button[type=submit]").await;
        p.until(
            "the new project",
            &format!(
                "return [...document.querySelectorAll('#projects-body td')].some(td => td.textContent === {})",
                json!(name)
            ),
        )
        .await;
    }
    p.shot("projects").await;
    let ids = p
        .js("return [...document.querySelectorAll('#projects-body tr')].map(tr => [tr.cells[0].textContent, tr.dataset.projectId])")
        .await;
    let project = |name: &str| -> String {
        ids.as_array()
            .unwrap()
            .iter()
            .find(|r| r[0] == name)
            .unwrap()[1]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (billing, web) = (project("billing"), project("web"));

    // Create API Key: errors inline first.
    p.click("#tab-keys").await;
    p.click("#create-key").await;
    p.until(
        "the create dialog",
        "return document.getElementById('create-dialog').open",
    )
    .await;
    assert_eq!(
        p.js("return document.activeElement.id").await,
        json!("key-name")
    );
    p.click("#create-submit").await;
    assert_eq!(p.text("#name-error").await, "Give the key a name.");
    p.typed("#key-name", "crm-sync").await;
    p.click("input[name=expiry][value=custom]").await;
    p.typed("#custom-days", "91").await;
    p.click("#create-submit").await;
    assert_eq!(
        p.text("#expiry-error").await,
        "A custom expiry is a whole number of days from 7 to 90."
    );
    p.click("input[name=expiry][value='30']").await;
    p.click("input[name=access][value=selected]").await;
    p.click("#create-submit").await;
    assert_eq!(
        p.text("#access-error").await,
        "Select at least one project, or choose All projects."
    );
    p.shot("create-errors").await;
    // Then right: 30 days, the billing project only.
    p.click(&format!("#project-choices input[value='{billing}']"))
        .await;
    p.click("#create-submit").await;
    p.until(
        "the one-time dialog",
        "return document.getElementById('secret-dialog').open",
    )
    .await;
    let key = p
        .js("return document.getElementById('secret-key').value")
        .await
        .as_str()
        .unwrap()
        .to_string();
    assert!(key.starts_with("kg_") && key.len() == 63, "{key}");
    assert!(
        p.text("#secret-dialog .warning")
            .await
            .contains("only time the key is shown")
    );
    p.shot("one-time-display").await;
    assert_eq!(verify(&kg, &url, &key, &billing), "allow");
    assert_eq!(verify(&kg, &url, &key, &web), "project-not-granted");
    // Copy: the clipboard, or the key selected for Ctrl+C.
    p.click("#copy-key").await;
    p.until(
        "the copy status",
        "return document.getElementById('copy-status').textContent.length > 0",
    )
    .await;
    let status = p.text("#copy-status").await;
    if status.starts_with("Selected") {
        assert_eq!(
            p.js("const i = document.getElementById('secret-key'); return document.activeElement === i && i.selectionStart === 0 && i.selectionEnd === i.value.length")
                .await,
            json!(true)
        );
    } else {
        assert_eq!(status, "Copied to the clipboard.");
    }
    // Closed: the key is nowhere in the page, its storage or any answer.
    p.click("#close-secret").await;
    p.until(
        "the dialog closed",
        "return !document.getElementById('secret-dialog').open",
    )
    .await;
    assert!(!p.everything().await.contains(&key));
    let answers = p
        .js("return Promise.all(['/v1/keys?org=acme', '/v1/projects?org=acme', '/v1/orgs', '/v1/session', '/v1/audit?org=acme'].map(u => fetch(u, {headers: {'X-Keygate-CSRF': state.csrf}}).then(r => r.text()))).then(a => a.join('\\n'))")
        .await;
    let answers = answers.as_str().unwrap();
    assert!(answers.contains("crm-sync") && !answers.contains(&key[3..]));
    p.until(
        "the new row",
        "return document.querySelectorAll('#keys-body tr').length === 1",
    )
    .await;
    let row = p.key_row("crm-sync").await;
    let row = row.as_str().unwrap();
    assert!(
        row.contains("Active") && row.contains("billing") && row.contains("30 days"),
        "{row}"
    );
    assert!(
        row.contains("in 30 days") || row.contains("in 29 days"),
        "{row}"
    );
    assert!(row.contains("Trigger Workflows"), "{row}");
    // It allowed a request just now (the verify above): last used says so.
    let used = p
        .js("return document.querySelector('#keys-body td[data-label=\"Last used\"]').textContent")
        .await;
    assert_eq!(used, json!("just now"));
    p.shot("key-listed").await;

    // Disable: Inactive (disabled), and verify denies.
    p.click("#keys-body tr button[aria-label='Disable crm-sync']")
        .await;
    p.until(
        "disabled",
        "return document.querySelector('#keys-body tr').innerText.includes('Inactive (disabled)')",
    )
    .await;
    assert_eq!(verify(&kg, &url, &key, &billing), "disabled");
    p.shot("disabled").await;
    // Filters: inactive shows it, active does not.
    p.js("const s = document.getElementById('filter-status'); s.value = 'active'; s.dispatchEvent(new Event('change')); return true")
        .await;
    assert_eq!(
        p.js("return document.querySelectorAll('#keys-body tr').length")
            .await,
        json!(0)
    );
    p.js("const s = document.getElementById('filter-status'); s.value = ''; s.dispatchEvent(new Event('change')); return true")
        .await;

    // A project key, from the Projects view.
    p.click("#tab-projects").await;
    p.click("#projects-body button[aria-label='Create a project key for web']")
        .await;
    p.until(
        "the create dialog",
        "return document.getElementById('create-dialog').open",
    )
    .await;
    assert!(
        p.text("#create-level")
            .await
            .contains("project-level key for project “web”")
    );
    p.typed("#key-name", "web-ci").await;
    p.click("input[name=expiry][value='7']").await;
    p.click("#create-submit").await;
    p.until(
        "the one-time dialog",
        "return document.getElementById('secret-dialog').open",
    )
    .await;
    let web_key = p
        .js("return document.getElementById('secret-key').value")
        .await
        .as_str()
        .unwrap()
        .to_string();
    p.click("#close-secret").await;
    assert_eq!(verify(&kg, &url, &web_key, &web), "allow");
    assert_eq!(verify(&kg, &url, &web_key, &billing), "project-not-granted");
    p.click("#tab-keys").await;
    p.until(
        "two rows",
        "return document.querySelectorAll('#keys-body tr').length === 2",
    )
    .await;
    let row = p.key_row("web-ci").await;
    assert!(row.as_str().unwrap().contains("Project: web"), "{row}");
    assert!(!p.everything().await.contains(&web_key));

    // Delete: the confirmation names the key; then verify denies.
    p.click("#keys-body tr button[aria-label='Delete crm-sync']")
        .await;
    p.until(
        "the confirmation",
        "return document.getElementById('confirm-dialog').open",
    )
    .await;
    assert!(p.text("#confirm-text").await.contains("“crm-sync”"));
    p.shot("delete-confirmation").await;
    p.click("#confirm-ok").await;
    p.until(
        "one row",
        "return document.querySelectorAll('#keys-body tr').length === 1",
    )
    .await;
    assert_eq!(verify(&kg, &url, &key, &billing), "unknown-key");
    p.shot("after-delete").await;

    // Readable on a 390-px-wide phone: no sideways scrolling.
    p.c.set_window_size(390, 844).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        p.js("return document.documentElement.scrollWidth <= window.innerWidth")
            .await,
        json!(true)
    );
    p.shot("phone").await;
    p.c.set_window_size(1280, 800).await.unwrap();

    // An organization's session sees its organization only.
    p.click("#sign-out").await;
    p.until(
        "the sign-in view",
        "return !document.getElementById('signin-view').hidden",
    )
    .await;
    p.typed("#signin-token", &globex_token).await;
    p.click("#signin-form button[type=submit]").await;
    p.until(
        "globex's key",
        "return [...document.querySelectorAll('#keys-body .name')].some(n => n.textContent === 'globex-crm')",
    )
    .await;
    assert_eq!(
        p.js("return [...document.querySelectorAll('#org-picker option')].map(o => o.value)")
            .await,
        json!(["globex"])
    );
    assert!(!p.everything().await.contains("web-ci"));
    let other = p
        .js("return fetch('/v1/keys?org=acme', {headers: {'X-Keygate-CSRF': state.csrf}}).then(r => r.status)")
        .await;
    assert_eq!(other, json!(403));
    // Without its CSRF header the cookie alone is not enough.
    let bare = p
        .js("return fetch('/v1/keys?org=globex').then(r => r.status)")
        .await;
    assert_eq!(bare, json!(403));
    p.shot("organization-session").await;
    let _ = (globex_project, globex_key);
    p.c.clone().close().await.unwrap();
}
