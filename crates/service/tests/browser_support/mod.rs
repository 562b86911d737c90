//! A small WebDriver client (plain JSON over HTTP, W3C protocol) driving
//! headless Chromium through `chromedriver`, for the portal's browser tests.
//!
//! When `chromedriver` is missing the tests print why and pass, unless
//! `CI=true` or `WEBHOOK_REQUIRE_BROWSER=1`, where they fail (as the
//! PostgreSQL tests do with `WEBHOOK_REQUIRE_POSTGRES`).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a test waits for something to appear on a page.
pub const WAIT: Duration = Duration::from_secs(20);

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("WEBHOOK_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WEBHOOK_CHROMEDRIVER") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Where screenshots go: `target/portal-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    // The test binary is target/<profile>/deps/<name>.
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("portal-screenshots");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A headless Chromium session.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a browser at 1440×1000; `None` (with a printed
    /// reason) when chromedriver is not installed and no CI requires it.
    pub async fn start(test: &str) -> Option<Browser> {
        let Some(driver_path) = find_on_path("chromedriver") else {
            let why = "chromedriver is not installed (apt-get install chromium chromium-driver)";
            assert!(
                !required(),
                "{test}: {why}, and CI=true or WEBHOOK_REQUIRE_BROWSER=1 requires the browser tests"
            );
            eprintln!(
                "skipped {test}: {why}; set WEBHOOK_REQUIRE_BROWSER=1 to make this a failure"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut command = Command::new(&driver_path);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so that dropping the browser ends
        // chromedriver and the Chromium it started, and nothing else.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command.spawn().expect("start chromedriver");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(r) = ready {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if v["value"]["ready"] == json!(true) {
                    break;
                }
            }
            assert!(
                started.elapsed() < WAIT,
                "chromedriver did not start on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1440,1000".into(),
            "--lang=en-US".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if std::env::var("WEBHOOK_BROWSER_VERBOSE").is_ok() {
            args.push("--enable-logging=stderr".into());
        }
        let mut options = json!({"args": args});
        if let Some(binary) = std::env::var_os("WEBHOOK_CHROMIUM") {
            options["binary"] = json!(binary.to_string_lossy());
        }
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": options,
            }}}))
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session answer");
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_string();
        Some(Browser {
            http,
            session: format!("{base}/session/{id}"),
            driver,
            _profile: profile,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("webdriver call")
            .json()
            .await
            .expect("webdriver answer");
        if answer["value"]["error"].is_string() {
            panic!("webdriver {path}: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The visible text of the page's main area.
    pub async fn main_text(&self) -> String {
        self.script(
            "return document.getElementById('main').innerText",
            json!([]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Waits until the main area's text contains `text`; returns that text.
    pub async fn wait_for_text(&self, text: &str) -> String {
        let started = Instant::now();
        loop {
            let now = self.main_text().await;
            if now.contains(text) {
                return now;
            }
            assert!(
                started.elapsed() < WAIT,
                "the page did not show '{text}' within {WAIT:?}; it shows:\n{now}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `css` matches at least `n` elements; returns how many.
    pub async fn wait_for_count(&self, css: &str, n: usize) -> usize {
        let started = Instant::now();
        loop {
            let count = self
                .script(
                    "return document.querySelectorAll(arguments[0]).length",
                    json!([css]),
                )
                .await
                .as_u64()
                .unwrap_or(0) as usize;
            if count >= n {
                return count;
            }
            let text = self.main_text().await;
            assert!(
                started.elapsed() < WAIT,
                "'{css}' matched {count} elements, not {n}, within {WAIT:?}; the page shows:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element matching `css` (empty when none).
    pub async fn text_of(&self, css: &str) -> String {
        self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Waits for an element `css` whose text contains `text` (any text when
    /// empty) and returns its WebDriver reference.
    async fn element(&self, css: &str, text: &str) -> String {
        let started = Instant::now();
        loop {
            let found = self
                .script(
                    "return [...document.querySelectorAll(arguments[0])].find(e => e.innerText.includes(arguments[1]) && !e.disabled) || null",
                    json!([css, text]),
                )
                .await;
            if let Some(id) = found[ELEMENT_KEY].as_str() {
                return id.to_string();
            }
            let page = self.main_text().await;
            assert!(
                started.elapsed() < WAIT,
                "no '{css}' with text '{text}' within {WAIT:?}; the page shows:\n{page}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks (as a user does) the first `css` element whose text contains `text`.
    pub async fn click(&self, css: &str, text: &str) {
        let id = self.element(css, text).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Clears the input `css` and types `text` into it with the keyboard.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css, "").await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Moves into the iframe matched by `css` (as a user's focus would).
    pub async fn enter_frame(&self, css: &str) {
        let id = self.element(css, "").await;
        self.call(
            reqwest::Method::POST,
            "/frame",
            Some(json!({"id": {ELEMENT_KEY: id}})),
        )
        .await;
    }

    /// Back to the top-level page.
    pub async fn leave_frames(&self) {
        self.call(reqwest::Method::POST, "/frame", Some(json!({"id": null})))
            .await;
    }

    /// Resizes the window.
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Saves a PNG of the window as `target/portal-screenshots/{name}.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("screenshot data"))
            .expect("base64 PNG");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Ends the session and chromedriver.
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole process group chromedriver leads: it and its Chromium.
        // `--`: a bare `-PGID` would be read as a signal number.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--"])
            .arg(format!("-{}", self.driver.id()))
            .status();
        // And chromedriver itself, directly, so that the wait below always
        // returns: a test's failure must be reported, not turned into a hang.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
