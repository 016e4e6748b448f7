//! The dashboard in a real browser: headless Chromium driven over
//! WebDriver (chromedriver on loopback, through fantoccini) against the
//! real `quota serve`. It signs in, changes a plan's enforcement, sees a
//! usage bar move after a guarded create, sets and clears an override
//! with the keyboard alone, searches users as it types (htmx under the
//! page's Content-Security-Policy), uploads a policy and rolls it back,
//! and signs out. A screenshot of each page goes to
//! `target/ui-screenshots/`.
//!
//! It needs Debian's `chromium` and `chromium-driver` (`make test`
//! installs them, and sets `QUOTA_BROWSER_TESTS=require` so that a
//! missing browser fails the run). Elsewhere, without them, it says so
//! and passes. `QUOTA_CHROMIUM` and `QUOTA_CHROMEDRIVER` name other
//! binaries.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::*;

/// chromedriver, stopped when the test ends (passing or not).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first of `candidates` that exists (an environment variable's
/// value first).
fn binary(variable: &str, candidates: &[&str]) -> Option<PathBuf> {
    std::env::var_os(variable)
        .map(PathBuf::from)
        .into_iter()
        .chain(candidates.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_driver(chromedriver: &Path) -> (Driver, String) {
    let port = free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver(child);
    let ready = within(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(ready.is_some(), "chromedriver did not start");
    (driver, format!("http://127.0.0.1:{port}"))
}

async fn browser(driver: &str, chromium: &Path, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            // CI runs as root, where Chromium's sandbox cannot start.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1100",
                     format!("--user-data-dir={}", profile.display())],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver)
        .await
        .unwrap()
}

/// Where the screenshots go: `target/ui-screenshots/`.
fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shoot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Waits (up to 60 s: an upload compiles a component) until the page's
/// address contains `needle` (or, for a needle ending in `$`, ends with
/// the rest).
async fn until_url(client: &Client, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let url = client.current_url().await.unwrap().to_string();
        let reached = match needle.strip_suffix('$') {
            Some(end) => url.ends_with(end),
            None => url.contains(needle),
        };
        if reached {
            return url;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still at {url}, waiting for {needle}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn press(client: &Client, key: Key) {
    let key = char::from(key);
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    client.perform_actions(keys).await.unwrap();
}

async fn type_text(client: &Client, text: &str) {
    let mut keys = KeyActions::new("keyboard".into());
    for c in text.chars() {
        keys = keys
            .then(KeyAction::Down { value: c })
            .then(KeyAction::Up { value: c });
    }
    client.perform_actions(keys).await.unwrap();
}

/// `attribute` of the focused element.
async fn focused(client: &Client, attribute: &str) -> String {
    let element = client.active_element().await.unwrap();
    element.attr(attribute).await.unwrap().unwrap_or_default()
}

/// Presses Tab until the element whose `attribute` is `value` has the
/// focus.
async fn tab_to(client: &Client, attribute: &str, value: &str) {
    for _ in 0..80 {
        press(client, Key::Tab).await;
        if focused(client, attribute).await == value {
            return;
        }
    }
    panic!("Tab never reached [{attribute}={value}]");
}

async fn meter(client: &Client, key: &str) -> String {
    let bar = client
        .find(Locator::Css(&format!("meter[id='usage-{key}']")))
        .await
        .unwrap();
    bar.attr("value").await.unwrap().unwrap()
}

fn admin_get(addr: &str, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path, ADMIN, None);
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn overrides(addr: &str) -> Vec<Value> {
    admin_get(addr, "/admin/overrides?user=ui-user")["overrides"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_in_a_real_browser() {
    let chromium = binary(
        "QUOTA_CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    );
    let chromedriver = binary("QUOTA_CHROMEDRIVER", &["/usr/bin/chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        assert!(
            std::env::var("QUOTA_BROWSER_TESTS").as_deref() != Ok("require"),
            "chromium and chromedriver are required (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: no chromium or chromedriver (make test installs them)");
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(&dir.path().join("quota.db"), &["--demo"]);
    let addr = server.addr.clone();
    let base = format!("http://{addr}");
    let (_driver, driver_url) = start_driver(&chromedriver);
    let client = browser(&driver_url, &chromium, &dir.path().join("profile")).await;

    // Any page without a session leads to the sign-in form.
    client.goto(&format!("{base}/ui/plans")).await.unwrap();
    until_url(&client, "/ui/login").await;
    shoot(&client, "01-sign-in").await;
    let token = client.find(Locator::Id("token")).await.unwrap();
    token.send_keys(ADMIN).await.unwrap();
    client
        .find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_url(&client, "/ui$").await;

    // A user, a decision and the overview's chart.
    let user_token = user(&addr, "ui-user", "free");
    user(&addr, "zed", "pro");
    assert_eq!(create(&addr, &user_token).0, 201);
    client.goto(&format!("{base}/ui")).await.unwrap();
    let bars = client.find_all(Locator::Css("svg rect")).await.unwrap();
    assert!(!bars.is_empty(), "the overview draws the decision");
    shoot(&client, "02-overview").await;

    // Plans: turn the free plan's enforcement off.
    client.goto(&format!("{base}/ui/plans")).await.unwrap();
    shoot(&client, "03-plans").await;
    client
        .find(Locator::Id("plan-free"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_url(&client, "/ui/plans/free$").await;
    assert_eq!(
        admin_get(&addr, "/admin/plans/free")["enforcement_enabled"],
        true
    );
    let select = client.find(Locator::Id("enforcement")).await.unwrap();
    select.select_by_value("off").await.unwrap();
    client
        .find(Locator::Id("save-plan"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_url(&client, "done=plan").await;
    assert_eq!(
        admin_get(&addr, "/admin/plans/free")["enforcement_enabled"],
        false
    );
    shoot(&client, "04-plan").await;
    // A what-if of turning it on again, as a table.
    client
        .find(Locator::Id("what-if"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Id("transitions"))
        .await
        .unwrap();
    shoot(&client, "05-what-if").await;

    // Users: the search narrows as it is typed (htmx).
    client.goto(&format!("{base}/ui/users")).await.unwrap();
    let results = client.find(Locator::Id("results")).await.unwrap();
    assert!(results.text().await.unwrap().contains("zed"));
    client
        .find(Locator::Id("q"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    type_text(&client, "ui-").await;
    let narrowed = within_async(Duration::from_secs(10), || async {
        let text = client
            .find(Locator::Id("results"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains("ui-user") && !text.contains("zed")
    })
    .await;
    assert!(narrowed, "the results did not narrow as the id was typed");
    shoot(&client, "06-users").await;

    // The usage bar moves after a guarded create.
    client
        .goto(&format!("{base}/ui/users/ui-user"))
        .await
        .unwrap();
    assert_eq!(meter(&client, "drafts.max").await, "1");
    assert_eq!(create(&addr, &user_token).0, 201);
    client.refresh().await.unwrap();
    assert_eq!(meter(&client, "drafts.max").await, "2");
    shoot(&client, "07-user").await;

    // An override set and cleared with the keyboard alone, from the
    // search page.
    client
        .goto(&format!("{base}/ui/users?q=ui-user"))
        .await
        .unwrap();
    tab_to(&client, "href", "/ui/users/ui-user").await;
    press(&client, Key::Enter).await;
    until_url(&client, "/ui/users/ui-user$").await;
    tab_to(&client, "id", "override-key").await;
    type_text(&client, "drafts.max").await;
    press(&client, Key::Tab).await;
    assert_eq!(focused(&client, "id").await, "override-value");
    type_text(&client, "7").await;
    press(&client, Key::Tab).await;
    assert_eq!(focused(&client, "id").await, "override-expires");
    type_text(&client, "2d").await;
    press(&client, Key::Enter).await;
    until_url(&client, "done=override").await;
    let set = overrides(&addr);
    assert_eq!(set.len(), 1, "{set:?}");
    assert_eq!(set[0]["value"], 7);
    assert!(set[0]["expires_at_ms"].is_i64(), "{set:?}");
    shoot(&client, "08-override").await;
    tab_to(&client, "id", "clear-drafts.max").await;
    press(&client, Key::Enter).await;
    until_url(&client, "done=override_cleared").await;
    assert!(overrides(&addr).is_empty());

    // Policy: upload the percent-grace example, then roll back.
    let builtin = admin_get(&addr, "/admin/policy")["active"]["sha256"].clone();
    let component = dir.path().join("percent-grace.wasm");
    std::fs::write(&component, quota_example_policies::PERCENT_GRACE).unwrap();
    client.goto(&format!("{base}/ui/policy")).await.unwrap();
    shoot(&client, "09-policy").await;
    let file = client.find(Locator::Id("component")).await.unwrap();
    file.send_keys(&component.display().to_string())
        .await
        .unwrap();
    client
        .find(Locator::Id("upload-policy"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_url(&client, "done=policy").await;
    let active = admin_get(&addr, "/admin/policy")["active"]["sha256"].clone();
    assert_ne!(active, builtin);
    let shown = client.find(Locator::Id("active-sha256")).await.unwrap();
    assert_eq!(json!(shown.text().await.unwrap()), active);
    shoot(&client, "10-policy-uploaded").await;
    client
        .find(Locator::Id("rollback"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_url(&client, "done=rollback").await;
    assert_eq!(
        admin_get(&addr, "/admin/policy")["active"]["sha256"],
        builtin
    );

    // Audit and events.
    client.goto(&format!("{base}/ui/audit")).await.unwrap();
    let audit = client.find(Locator::Css("table.audit")).await.unwrap();
    assert!(audit.text().await.unwrap().contains("admin (dashboard)"));
    shoot(&client, "11-audit").await;
    client.goto(&format!("{base}/ui/events")).await.unwrap();
    shoot(&client, "12-events").await;

    // Signing out ends the session.
    client
        .find(Locator::Id("sign-out"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_url(&client, "/ui/login").await;
    client.goto(&format!("{base}/ui/users")).await.unwrap();
    until_url(&client, "/ui/login").await;

    client.close().await.unwrap();
    terminate(server);
    eprintln!(
        "the browser test took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        screenshots().display()
    );
}

/// Asks `holds` every 50 ms until it is true, for at most `limit`.
async fn within_async<F, Fut>(limit: Duration, mut holds: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !holds().await {
        if started.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}
