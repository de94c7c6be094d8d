//! A private `redis-server` for tests: on a free port, in a temporary directory, stopped when
//! dropped. Never the machine's shared instance.
//!
//! Available with the `test-util` feature. Needs `redis-server` on the `PATH` (or in
//! `TOLLGATE_REDIS_SERVER`); without it, [`RedisServer::start`] panics with a message saying so,
//! rather than letting a test pass without Redis.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` process of the test's own.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    /// Serves TLS only (`rediss://`), with a certificate for 127.0.0.1 signed by a fresh CA.
    tls: bool,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn binary() -> PathBuf {
    std::env::var_os("TOLLGATE_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free local port")
}

impl RedisServer {
    /// Starts a server with no persistence on a free port, and waits until it answers.
    pub fn start() -> RedisServer {
        Self::start_with(None)
    }

    /// Starts a server that requires `password`.
    pub fn start_with_password(password: &str) -> RedisServer {
        Self::start_with(Some(password.to_owned()))
    }

    /// Starts a server that speaks TLS only, with a certificate for `127.0.0.1` signed by a CA
    /// made for it ([`ca_pem`](Self::ca_pem)); needs `openssl` on the `PATH`.
    pub fn start_tls() -> RedisServer {
        Self::start_with_tls(None, true)
    }

    fn start_with(password: Option<String>) -> RedisServer {
        Self::start_with_tls(password, false)
    }

    fn start_with_tls(password: Option<String>, tls: bool) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            password,
            tls,
            dir: tempfile::tempdir().expect("cannot create a temporary directory"),
            child: None,
        };
        if tls {
            server.make_certificates();
        }
        server.restart();
        server
    }

    /// The CA certificate (PEM) that signed a TLS server's certificate.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("ca.pem")).expect("not a TLS server")
    }

    fn make_certificates(&self) {
        let dir = self.dir.path();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("cannot run openssl (needed for a TLS Redis): {e}"));
            assert!(status.success(), "openssl {args:?} failed");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=tollgate test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
    }

    /// The port it listens on (loopback).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/` (`rediss://` for TLS; with the password, if any).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.password {
            Some(p) => format!("{scheme}://:{p}@127.0.0.1:{}/", self.port),
            None => format!("{scheme}://127.0.0.1:{}/", self.port),
        }
    }

    /// Kills the server (SIGKILL): everything in it is gone, as after a crash without
    /// persistence.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty (killing it first if it runs).
    pub fn restart(&mut self) {
        self.kill();
        let mut command = Command::new(binary());
        if self.tls {
            let file = |name: &str| self.dir.path().join(name);
            command
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(file("server.pem"))
                .arg("--tls-key-file")
                .arg(file("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(file("ca.pem"))
                .args(["--tls-auth-clients", "no"]);
        } else {
            command.arg("--port").arg(self.port.to_string());
        }
        command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.arg("--requirepass").arg(password);
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} (install Redis, or set TOLLGATE_REDIS_SERVER): {e}",
                binary().display()
            )
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
