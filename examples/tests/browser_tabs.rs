//! The browser example (`examples/browser`) in three headless Chromium tabs against the
//! embedded server (3 s tokens, rotating refresh tokens, a reused one revokes the
//! session): one session for the three tabs, about one refresh per expiry, no refresh
//! token spent twice, every request answered, for 30 s.
//!
//! It needs wasm-bindgen-cli (at the version of the wasm-bindgen crate in Cargo.lock),
//! the wasm32-unknown-unknown target, Chromium and chromedriver, and takes about 40 s:
//! it is ignored by `cargo test`, and `.ci/wasm-tests` runs it. Without the tools it
//! says what is missing and passes, unless `CI=true`, where it fails.
//!
//! `SILENT_REFRESH_BROWSER_PAGE` names a folder `examples/browser/build.sh` built;
//! without it the test runs the script (with a target folder of its own, so as not to
//! wait for the lock of the one `cargo test` holds).

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use silent_refresh_testkit::server::signin::SignInConfig;
use silent_refresh_testkit::server::{AuthServer, ServerConfig};

/// How long the tabs run on one session.
const RUN: Duration = Duration::from_secs(30);
/// The access tokens' lifetime.
const LIFETIME: Duration = Duration::from_secs(3);

/// Chromium and its driver, if here.
struct Browser {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// What is missing to run the test.
fn tools() -> Result<Browser, String> {
    let chromium = which("chromium")
        .or_else(|| which("chromium-browser"))
        .ok_or("chromium")?;
    let chromedriver = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| which("chromedriver"))
        .ok_or("chromedriver")?;
    if std::env::var_os("SILENT_REFRESH_BROWSER_PAGE").is_none() {
        which("wasm-bindgen").ok_or("wasm-bindgen (wasm-bindgen-cli)")?;
    }
    Ok(Browser {
        chromium,
        chromedriver,
    })
}

/// The page's folder: the one named, or built now.
fn page_folder() -> PathBuf {
    if let Some(folder) = std::env::var_os("SILENT_REFRESH_BROWSER_PAGE") {
        return PathBuf::from(folder);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("browser-example-build");
    let output = Command::new(root.join("examples/browser/build.sh"))
        .arg("--dev")
        .env("CARGO_TARGET_DIR", &target)
        .stderr(Stdio::inherit())
        .output()
        .expect("examples/browser/build.sh runs");
    assert!(output.status.success(), "examples/browser/build.sh failed");
    let stdout = String::from_utf8(output.stdout).expect("a path");
    PathBuf::from(stdout.lines().last().expect("the folder, last").trim())
}

/// A chromedriver on 127.0.0.1, and one session of headless Chromium; both end when
/// dropped.
struct Driver {
    process: Child,
    base: String,
    session: String,
}

impl Driver {
    fn start(browser: &Browser) -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut process = Command::new(&browser.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        // It says on its standard output when it listens.
        let stdout = process.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.any(|line| line.is_ok_and(|l| l.contains("started successfully")));
        assert!(ready, "chromedriver did not start");
        std::thread::spawn(move || lines.for_each(drop));
        let base = format!("http://127.0.0.1:{port}");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser.chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run"],
            },
        }}});
        let created = post(&format!("{base}/session"), &capabilities);
        let session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Self {
            process,
            base,
            session,
        }
    }

    fn call(&self, path: &str, body: &Value) -> Value {
        post(
            &format!("{}/session/{}{path}", self.base, self.session),
            body,
        )
    }

    fn open(&self, url: &str) {
        self.call("/url", &json!({ "url": url }));
    }

    /// Opens a new tab and makes it the current one.
    fn new_tab(&self) -> String {
        let tab = self.call("/window/new", &json!({ "type": "tab" }));
        let handle = tab["handle"].as_str().expect("a handle").to_owned();
        self.switch_to(&handle);
        handle
    }

    fn switch_to(&self, handle: &str) {
        self.call("/window", &json!({ "handle": handle }));
    }

    fn current(&self) -> String {
        let url = format!("{}/session/{}/window", self.base, self.session);
        let mut answer = ureq::get(&url).call().expect("the current tab");
        let value: Value =
            serde_json::from_str(&answer.body_mut().read_to_string().expect("a body"))
                .expect("JSON");
        value["value"].as_str().expect("a handle").to_owned()
    }

    /// The current tab's `window.silentRefreshReport`.
    fn report(&self) -> Value {
        self.call(
            "/execute/sync",
            &json!({ "script": "return window.silentRefreshReport || null", "args": [] }),
        )
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = ureq::delete(&url).call();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A WebDriver command: its `value`.
fn post(url: &str, body: &Value) -> Value {
    let mut answer = ureq::post(url)
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap_or_else(|error| panic!("WebDriver {url}: {error}"));
    let value: Value =
        serde_json::from_str(&answer.body_mut().read_to_string().expect("a body")).expect("JSON");
    value["value"].clone()
}

fn query(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Waits until the current tab reports a session, within `limit`.
fn wait_signed_in(driver: &Driver, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let report = driver.report();
        if report["signed_in"] == true && report["ok"].as_u64() > Some(0) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "the tab did not sign in within {limit:?}: {report}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs wasm-bindgen-cli, Chromium and chromedriver, and runs 40 s: .ci/wasm-tests runs it"]
fn three_tabs_share_one_session_and_one_refresh_per_expiry() {
    let browser = match tools() {
        Ok(browser) => browser,
        Err(missing) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped: {missing} is missing (.ci/wasm-tests --install installs it)");
            return;
        }
        Err(missing) => panic!("{missing} is missing (CI=true: the test must run)"),
    };
    let folder = page_folder();
    let server = AuthServer::start(ServerConfig {
        token_lifetime: LIFETIME,
        ..ServerConfig::default()
    })
    .expect("the embedded server starts");
    let signin = server.signin_config();
    let client_id = signin.public_client_id.clone();
    server.set_signin_config(SignInConfig {
        redirect_path: "/index.html".to_owned(),
        ..signin
    });
    server.serve_folder(&folder);
    let page = format!(
        "{}/index.html?issuer={}&client_id={}&api={}",
        server.origin(),
        query(&server.issuer()),
        query(&client_id),
        query(&server.resource_url()),
    );

    let driver = Driver::start(&browser);
    driver.open(&page);
    wait_signed_in(&driver, Duration::from_secs(20));
    let mut tabs = vec![driver.current()];
    for _ in 0..2 {
        tabs.push(driver.new_tab());
        driver.open(&page);
        wait_signed_in(&driver, Duration::from_secs(20));
    }
    let before = server.take_stats();
    let started = Instant::now();
    std::thread::sleep(RUN);
    let reports: Vec<Value> = tabs
        .iter()
        .map(|tab| {
            driver.switch_to(tab);
            driver.report()
        })
        .collect();
    let elapsed = started.elapsed();
    let stats = server.take_stats();

    let count = |report: &Value, name: &str| report[name].as_u64().expect("a count");
    let refreshes: u64 = reports.iter().map(|r| count(r, "refreshes")).sum();
    eprintln!(
        "{elapsed:?}, three tabs: {} refreshes at the server ({} by the tabs in all, {:?} each), \
         {} requests answered, {} failed; before the run: {} token requests",
        stats.issued,
        refreshes,
        reports
            .iter()
            .map(|r| count(r, "refreshes"))
            .collect::<Vec<_>>(),
        reports.iter().map(|r| count(r, "ok")).sum::<u64>(),
        reports.iter().map(|r| count(r, "failed")).sum::<u64>(),
        before.token_requests,
    );
    for report in &reports {
        assert_eq!(report["signed_in"], true, "{report}");
        assert_eq!(
            count(report, "failed"),
            0,
            "every request answered: {report}"
        );
        assert!(count(report, "ok") > 0, "{report}");
    }
    assert_eq!(stats.reuse_detected, 0, "no refresh token spent twice");
    assert_eq!(stats.invalid_grant, 0, "the session was never revoked");
    // A token is refreshed once, in its window (from half its life, 1.5 s, to its
    // safety margin, 2.7 s): between one refresh per lifetime and one per half.
    let lifetimes = elapsed.as_secs_f64() / LIFETIME.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let issued = stats.issued as f64;
    assert!(
        issued >= lifetimes - 1.0 && issued <= 2.0 * lifetimes + 1.0,
        "{issued} refreshes in {lifetimes:.1} lifetimes: not one per expiry"
    );
}
