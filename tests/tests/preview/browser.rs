//! Headless Chromium driven through chromedriver, one of each per test.
//!
//! chromedriver listens on a free 127.0.0.1 port and starts Chromium with a profile in
//! a temporary directory, headless, 1200x900, without the sandbox when running as root
//! (a root Chromium refuses to start with it). Dropping a [`Browser`] ends the session,
//! which closes Chromium, then stops chromedriver, also when a test fails midway.
//!
//! Where to find them: `chromedriver` and `chromium` (or `chromium-browser`,
//! `google-chrome`) on `PATH`, or `FLOWGATE_E2E_CHROMEDRIVER` and
//! `FLOWGATE_E2E_CHROMIUM`. When either is missing the tests print why and pass on,
//! unless `CI` is set: there they fail, as the PostgreSQL tests do.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long a test waits for something the page should do; generous, since two cores
/// are shared by many builds. Reaching it fails the test.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    driver: Child,
    port: u16,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

/// An executable on `PATH` (or at `var`).
fn executable(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Whether this process runs as root (`Uid:` in `/proc/self/status`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

impl Browser {
    /// A new browser session, or `None` (after printing why) when chromedriver or
    /// Chromium is not installed and `CI` is unset.
    pub async fn start() -> Option<Self> {
        let driver = executable("FLOWGATE_E2E_CHROMEDRIVER", &["chromedriver"]);
        let chromium = executable(
            "FLOWGATE_E2E_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            let why = "chromedriver or chromium is not installed (apt-get install chromium \
                       chromium-driver), nor named by FLOWGATE_E2E_CHROMEDRIVER and \
                       FLOWGATE_E2E_CHROMIUM";
            if std::env::var_os("CI").is_some() {
                panic!("{why}, and CI is set: the browser tests must run");
            }
            eprintln!("SKIPPED: {why}; the preview page's browser tests did not run");
            return None;
        };
        Some(Self::launch(&driver, &chromium).await)
    }

    async fn launch(driver: &Path, chromium: &Path) -> Self {
        let profile = tempfile::tempdir().expect("a temporary profile directory");
        // chromedriver takes a port, not a listener: find a free one, then let it bind.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).unwrap();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!(
                "--log-path={}",
                profile.path().join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver.display()));
        let mut args = vec![
            "--headless=new".to_owned(),
            "--window-size=1200,900".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!(
                "--user-data-dir={}",
                profile.path().join("chromium").display()
            ),
        ];
        if is_root() {
            args.push("--no-sandbox".to_owned());
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);
        // chromedriver needs a moment to listen: retry the session until it does.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let client = loop {
            match builder.connect(&url).await {
                Ok(client) => break client,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    let log = std::fs::read_to_string(profile.path().join("chromedriver.log"))
                        .unwrap_or_default();
                    panic!("no browser session from chromedriver: {e}\n{log}");
                }
            }
        };
        let session = client.session_id().await.ok().flatten();
        Self {
            client,
            driver: child,
            port,
            session,
            _profile: profile,
        }
    }

    /// The first element matching `css`, once there is one.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!("no element `{css}`: {e}\n{}", self.dump().await),
        }
    }

    /// Clicks the element matching `css`, found afresh (the page redraws a screen
    /// after every change, so older element references go stale).
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    /// Replaces the text of the input matching `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    /// Chooses `value` in the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select `{value}` in `{css}`: {e}"));
    }

    /// Runs `script` (a function body, `return`ing a value) in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns something other than `null`, `false`, `""` or
    /// `0`, and returns it; fails the test after [`PATIENCE`], naming `what`.
    pub async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let value = self.js(script).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited in vain for {what}\n{}",
                self.dump().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the phone shows screen `id`.
    pub async fn screen(&self, id: &str) {
        let script = format!(
            "return document.querySelector('[data-testid=screen]').dataset.screen === {};",
            json!(id)
        );
        self.until(&format!("screen {id}"), &script).await;
    }

    /// The visible text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// How many log entries the side panel shows.
    pub async fn log_entries(&self) -> u64 {
        self.js("return document.querySelectorAll('[data-testid=log-entry]').length;")
            .await
            .as_u64()
            .unwrap()
    }

    /// Saves a PNG of the window at `path`, creating its directory.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// What the page shows, for a failure message.
    async fn dump(&self) -> String {
        self.client
            .execute(
                "return 'screen: ' + document.querySelector('[data-testid=screen]')?.dataset.screen \
                 + '\\nphone: ' + document.querySelector('[data-testid=phone]')?.innerText \
                 + '\\nlog: ' + document.querySelector('[data-testid=log]')?.innerText;",
                vec![],
            )
            .await
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|e| format!("(the page cannot be read: {e})"))
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    pub async fn close(mut self) {
        let client = self.client.clone();
        if client.close().await.is_ok() {
            self.session = None;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that failed midway never reached `close`: end the session by hand
        // (DELETE /session/<id>, which makes chromedriver quit Chromium) before
        // stopping chromedriver, so no Chromium outlives the test.
        if let Some(session) = self.session.take()
            && let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port))
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                stream,
                "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.port
            );
            let _ = stream.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
