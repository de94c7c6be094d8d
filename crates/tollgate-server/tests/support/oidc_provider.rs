//! node-oidc-provider, a certified OpenID provider no one here wrote, as the identity provider of
//! end-to-end tests (set up in `tests/oidc_provider/`), and a browser that signs users in and out
//! through its own pages (`tests/oidc_provider/browser.py`, Python's standard library only).

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running node-oidc-provider.
pub struct Provider {
    child: Child,
    /// Its issuer, `http://127.0.0.1:<port>`.
    pub issuer: String,
    /// What it printed about its back-channel logouts (`backchannel.success` / `.error ...`).
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc_provider")
}

/// Installs the provider's packages once under `target/` (pinned in `package.json`).
fn installed() -> PathBuf {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/oidc-provider-test");
    let package = here().join("package.json");
    let wanted = std::fs::read(&package).expect("read tests/oidc_provider/package.json");
    let current = std::fs::read(target.join("package.json")).ok();
    if current.as_deref() != Some(&wanted[..]) || !target.join("node_modules").is_dir() {
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("package.json"), &wanted).unwrap();
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&target)
            .status()
            .unwrap_or_else(|e| {
                panic!("this test needs node and npm (Debian: apt-get install nodejs npm): {e}")
            });
        assert!(
            status.success(),
            "npm install of node-oidc-provider failed (it needs the npm registry)"
        );
    }
    std::fs::copy(here().join("provider.mjs"), target.join("provider.mjs")).unwrap();
    target
}

impl Provider {
    /// Starts the provider on a free port; it sends back-channel logouts to `logout_uri`.
    pub fn start(port: u16, logout_uri: &str) -> Provider {
        let dir = installed();
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("BACKCHANNEL_LOGOUT_URI", logout_uri)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("this test needs node (Debian: apt-get install nodejs): {e}")
            });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("ready ") {
                    let _ = tx.send(());
                }
                eprintln!("provider: {line}");
                lines.lock().unwrap().push(line);
            }
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("node-oidc-provider did not start");
        Provider {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// The provider's JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer)
    }
}

/// A user's browser: its cookies live in a file between sign-in and sign-out.
pub struct Browser {
    jar: tempfile::NamedTempFile,
    /// The access token (a JWT for `urn:orders`) the sign-in ended with.
    pub access_token: String,
    id_token: String,
}

fn browser(args: &[&str]) -> Value {
    let output = Command::new("python3")
        .arg(here().join("browser.py"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("this test needs python3: {e}"));
    assert!(output.status.success(), "browser.py {args:?} failed");
    serde_json::from_slice(&output.stdout).expect("browser.py prints JSON")
}

impl Browser {
    /// Signs `user` in at `provider` through its login and consent pages, then exchanges the
    /// code for tokens.
    pub fn sign_in(provider: &Provider, user: &str) -> Browser {
        let jar = tempfile::NamedTempFile::new().unwrap();
        let path = jar.path().to_str().unwrap().to_owned();
        let tokens = browser(&["sign-in", &provider.issuer, user, &path]);
        Browser {
            jar,
            access_token: tokens["access_token"].as_str().unwrap().to_owned(),
            id_token: tokens["id_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Ends the session on the provider's logout page; returns once the provider answered,
    /// which it does after its back-channel logouts were answered.
    pub fn sign_out(&self, provider: &Provider) {
        let path = self.jar.path().to_str().unwrap().to_owned();
        browser(&["sign-out", &provider.issuer, &path, &self.id_token]);
    }
}
