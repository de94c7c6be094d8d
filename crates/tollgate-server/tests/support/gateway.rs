//! `tollgate gateway` run as operators run it, and what tests put behind it.

use super::http;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that answers every request `200 upstream` and closes.
pub async fn upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream")
                    .await;
            });
        }
    });
    addr
}

pub struct Gateway {
    /// The process.
    pub child: Child,
    /// `http://` and the gateway's listener.
    pub base: String,
    /// `http://` and its ops listener.
    pub ops: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_gateway(path: &std::path::Path) -> Gateway {
    start_gateway_with_env(path, &[])
}

/// [`start_gateway`] with these environment variables set.
pub fn start_gateway_with_env(path: &std::path::Path, env: &[(&str, &str)]) -> Gateway {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["gateway", "--config"])
        .arg(path)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tollgate gateway");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("tollgate gateway is serving") {
                let field = |name: &str| {
                    line.split(&format!("{name}="))
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                        .unwrap_or("")
                        .to_owned()
                };
                let _ = tx.send((field("address"), field("ops")));
            }
            eprintln!("gateway: {line}");
        }
    });
    let (address, ops) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("tollgate gateway did not start");
    Gateway {
        child,
        base: format!("http://{address}"),
        ops: format!("http://{ops}"),
    }
}

pub async fn status(url: &str, token: Option<&str>) -> u16 {
    let mut request = http().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Waits until the gateway's `/readyz` answers 200.
pub async fn wait_ready(gateway: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&format!("{}/readyz", gateway.ops), None).await != 200 {
        assert!(Instant::now() < deadline, "the gateway never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
