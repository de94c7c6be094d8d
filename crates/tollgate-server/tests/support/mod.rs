//! Runs the real `tollgate` binary on a temporary data directory and talks to it over HTTP.
#![allow(dead_code)]
#![allow(
    unreachable_pub,
    reason = "helpers of a test crate, which has no public API"
)]

pub mod following;
pub mod gateway;
pub mod metrics;
pub mod oidc_provider;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const INTEGRATION: (&str, &str) = ("integration", "integration-secret");
pub const SVC: (&str, &str) = ("svc", "svc-secret-0123456789");
pub const GATEWAY: (&str, &str) = ("gateway", "gateway-secret");

/// The demo configuration, on a free port and the given data directory.
pub fn config(data_dir: &Path) -> String {
    let demo = include_str!("../../../../examples/tollgate.toml");
    let mut out = String::new();
    for line in demo.lines() {
        if line.starts_with("listen =") {
            out.push_str("listen = \"127.0.0.1:0\"\n");
        } else if line.starts_with("data_dir =") {
            out.push_str(&format!(
                "data_dir = {:?}\n",
                data_dir.display().to_string()
            ));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    // A second tenant's user, for cutoffs that must spare alice.
    out.push_str(
        "\n[[users]]\nusername = \"bob\"\ntenants = [\"/Globex\"]\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$0HYi9wEY6gDoEsnZPMKZdw$RwOZH9IwvdSZolfZP5A/5Bm/pAiOfdHr5en/ZMcoGSg\"\n",
    );
    out
}

/// A running server process.
pub struct Server {
    child: Child,
    pub base: String,
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Writes `config` next to the data directory and starts `tollgate serve` on it.
    pub fn start(dir: &Path, config: &str) -> Server {
        let path = dir.join("tollgate.toml");
        std::fs::write(&path, config).unwrap();
        Self::start_file(&path)
    }

    pub fn start_file(path: &Path) -> Server {
        Self::start_file_with_env(path, &[])
    }

    /// [`start_file`](Self::start_file) with these environment variables set.
    pub fn start_file_with_env(path: &Path, env: &[(&str, &str)]) -> Server {
        Self::start_file_with(path, &[], env)
    }

    /// [`start_file`](Self::start_file) with more arguments after `--config path`, and these
    /// environment variables set.
    pub fn start_file_with(path: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["serve", "--config"])
            .arg(path)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tollgate");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("address=").nth(1)
                    && line.contains("tollgate is serving")
                {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("tollgate did not start: {:?}", logs.lock().unwrap()));
        Server {
            child,
            base: format!("http://{address}"),
            logs,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "tollgate exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tollgate did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// POSTs a form with HTTP Basic client authentication; returns (status, JSON or Null).
pub async fn post_form(
    http: &reqwest::Client,
    url: &str,
    client: (&str, &str),
    form: &[(&str, &str)],
) -> (u16, Value) {
    let response = http
        .post(url)
        .basic_auth(client.0, Some(client.1))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

pub async fn password_token(server: &Server, user: &str, password: &str, tenant: &str) -> Value {
    let (status, body) = post_form(
        &http(),
        &server.url("/connect/token"),
        INTEGRATION,
        &[
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
            ("tenant_path", tenant),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

pub async fn service_token(server: &Server) -> String {
    let (status, body) = post_form(
        &http(),
        &server.url("/connect/token"),
        SVC,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// Whether the issuer holds `token` valid, as `/connect/introspect` (asked by the `gateway`
/// resource server, which may introspect any token) tells: 200 while active, 401 once it is
/// revoked, cut off or unknown (the answers a Layer sharing the issuer's index would give).
pub async fn token_status(server: &Server, token: &str) -> u16 {
    let (status, body) = post_form(
        &http(),
        &server.url("/connect/introspect"),
        GATEWAY,
        &[("token", token)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    if body["active"] == true { 200 } else { 401 }
}
