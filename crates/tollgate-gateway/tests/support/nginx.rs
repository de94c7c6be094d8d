//! An nginx of a test's own: a temporary prefix, the `server` blocks the test writes, stopped
//! when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `TOLLGATE_NGINX`, or `nginx` on the `PATH`, in `/usr/sbin` or `/usr/local/sbin`; the test
/// fails, saying how to install it, when there is none.
pub fn nginx_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TOLLGATE_NGINX") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "this test needs nginx (Debian: `apt-get install nginx`, which .ci/run does), \
                 or TOLLGATE_NGINX=/path/to/nginx"
            )
        })
}

/// A free port on 127.0.0.1, for a `listen` line.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running nginx, one worker, its temporary files in its own prefix.
pub struct Nginx {
    child: Child,
    _prefix: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx in `prefix` (a temporary directory holding what the blocks refer to) with `servers` (the `server { ... }` blocks) in its `http`
    /// block, and waits until it listens on every one of `ports`.
    pub fn start(prefix: tempfile::TempDir, servers: &str, ports: &[u16]) -> Nginx {
        let p = prefix.path().display();
        let conf = format!(
            r#"
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
{servers}
}}
"#
        );
        let conf_path = prefix.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(prefix.path())
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(&conf_path)
            .arg("-g")
            .arg(format!("daemon off; pid {p}/nginx.pid; error_log stderr;"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let nginx = Nginx {
            child,
            _prefix: prefix,
        };
        let start = Instant::now();
        for port in ports {
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "nginx did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        nginx
    }
}

impl Drop for Nginx {
    /// SIGQUIT asks the master to stop its workers too (SIGKILL would orphan them); SIGKILL
    /// only if it has not stopped in time.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
