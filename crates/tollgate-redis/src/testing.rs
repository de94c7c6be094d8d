//! A private `redis-server` for tests: on a free port, in a temporary directory, stopped when
//! dropped. Never the machine's shared instance. Also, for failover tests: a Sentinel set (a
//! primary, two replicas behind a [`DelayProxy`] each, three Sentinels) and a Cluster (three
//! masters, three replicas).
//!
//! Available with the `test-util` feature. Needs `redis-server` on the `PATH` (or in
//! `TOLLGATE_REDIS_SERVER`); without it, [`RedisServer::start`] panics with a message saying so,
//! rather than letting a test pass without Redis.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// More `redis-server` arguments (replication, cluster mode).
    args: Vec<String>,
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

    /// Starts a server with these extra `redis-server` arguments (`--replicaof`, say).
    pub fn start_with_args(args: &[&str]) -> RedisServer {
        Self::start_full(None, false, args)
    }

    fn start_with(password: Option<String>) -> RedisServer {
        Self::start_with_tls(password, false)
    }

    fn start_with_tls(password: Option<String>, tls: bool) -> RedisServer {
        Self::start_full(password, tls, &[])
    }

    fn start_full(password: Option<String>, tls: bool, args: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            password,
            tls,
            dir: tempfile::tempdir().expect("cannot create a temporary directory"),
            child: None,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
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

    /// Stops the process (SIGSTOP) without killing it: it reads nothing, answers nothing, as if
    /// its network were cut, until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a [paused](Self::pause) server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(signal)
                .arg(child.id().to_string())
                .status()
                .unwrap_or_else(|e| panic!("cannot run kill {signal}: {e}"));
            assert!(status.success(), "kill {signal} failed");
        }
    }

    /// Whether the process runs (it was not [killed](Self::kill)).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
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
        command.args(&self.args);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} (install Redis, or set TOLLGATE_REDIS_SERVER): {e}",
                binary().display()
            )
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
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
        // A paused process must run to die of SIGKILL promptly everywhere.
        if self.child.is_some() {
            self.resume();
        }
        self.kill();
    }
}

/// A plain connection of the kit's own, with bounded waits.
fn kit_connection(port: u16) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    client.get_connection_with_timeout(Duration::from_secs(2))
}

/// Whether the server on `port` answers `ROLE` as a primary.
fn answers_as_primary(port: u16) -> bool {
    kit_connection(port)
        .and_then(|mut c| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut c))
        .is_ok_and(
            |role| matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master"),
        )
}

/// Waits until `ready` holds, polling every 50 ms; panics naming `what` after `within`.
fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "within {within:?}, never: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP proxy on a free port that delays every byte from the server to its clients by a set
/// time (the other way is not delayed): put between a replica and its primary, the replica lags
/// by that much, as over a slow link, and writes of the last moments exist on the primary alone.
#[derive(Debug)]
pub struct DelayProxy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl DelayProxy {
    /// A proxy to `127.0.0.1:upstream`, delaying what it answers by `delay`. It runs on threads
    /// of its own until dropped.
    pub fn start(upstream: u16, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let stopped = stopped.clone();
                std::thread::spawn(move || relay_connection(client, server, delay, &stopped));
            }
        });
        DelayProxy { port, stop }
    }

    /// The port to connect to instead of the server's.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `client` to `server` at once, and `server` to `client` `delay` late, until either
/// side closes. When the server goes away, what it sent and the proxy has not delivered yet is
/// dropped: it was still on the dead primary's side of the slow link.
fn relay_connection(client: TcpStream, server: TcpStream, delay: Duration, stop: &AtomicBool) {
    let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(std::net::Shutdown::Both);
    });
    let server_gone = Arc::new(AtomicBool::new(false));
    let (sender, receiver) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let mut client_write = client;
    let gone = server_gone.clone();
    std::thread::spawn(move || {
        for (due, bytes) in receiver {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if gone.load(Ordering::SeqCst) || client_write.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = client_write.shutdown(std::net::Shutdown::Both);
    });
    let mut server_read = server;
    let mut buffer = vec![0; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        match server_read.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if sender
                    .send((Instant::now() + delay, buffer[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    server_gone.store(true, Ordering::SeqCst);
}

/// The ports of the replicas connected to the server on `port`, as it says (`INFO replication`).
fn replicas_of(port: u16) -> Vec<u16> {
    let info = kit_connection(port)
        .and_then(|mut c| {
            redis::cmd("INFO")
                .arg("replication")
                .query::<String>(&mut c)
        })
        .unwrap_or_default();
    info.lines()
        .filter(|line| line.starts_with("slave"))
        .filter_map(|line| line.split(",port=").nth(1)?.split(',').next()?.parse().ok())
        .collect()
}

/// The primary's name in a [`SentinelSet`].
pub const SENTINEL_MASTER: &str = "tollgate-test";

/// Redis Sentinel: a primary, two replicas that each replicate through a [`DelayProxy`] (so
/// they lag by a known time), and three Sentinels (quorum 2) that fail over within about two
/// seconds of the primary's death.
#[derive(Debug)]
pub struct SentinelSet {
    /// Primary first, then the replicas; the roles change with failovers.
    servers: Vec<RedisServer>,
    /// Kept for their lifetime: the replicas' links to the first primary.
    _proxies: Vec<DelayProxy>,
    sentinels: Vec<RedisServer>,
    /// The password the Sentinels require (`requirepass`), if any.
    sentinel_password: Option<String>,
}

impl SentinelSet {
    /// Starts the set, each replica lagging `replication_delay` behind the primary, and waits
    /// until the Sentinels know the replicas and each other (so that a failover can happen).
    pub fn start(replication_delay: Duration) -> SentinelSet {
        Self::start_with(replication_delay, None)
    }

    /// [`start`](Self::start), with Sentinels that require `password` of their clients and of
    /// each other (`requirepass`, `sentinel sentinel-pass`).
    pub fn start_with_sentinel_password(
        replication_delay: Duration,
        password: &str,
    ) -> SentinelSet {
        Self::start_with(replication_delay, Some(password))
    }

    fn start_with(replication_delay: Duration, sentinel_password: Option<&str>) -> SentinelSet {
        // A replica that must resynchronise in full after the failover (it was ahead of the
        // one promoted) gets its copy at once, not after Redis's 5 s wait for other replicas.
        let quick_sync = ["--repl-diskless-sync-delay", "0"];
        let primary = RedisServer::start_with_args(&quick_sync);
        let mut servers = vec![primary];
        let mut proxies = Vec::new();
        for _ in 0..2 {
            let proxy = DelayProxy::start(servers[0].port(), replication_delay);
            let port = proxy.port().to_string();
            servers.push(RedisServer::start_with_args(&[
                quick_sync[0],
                quick_sync[1],
                "--replicaof",
                "127.0.0.1",
                &port,
            ]));
            proxies.push(proxy);
        }
        let primary = servers[0].port();
        wait_until("two replicas in sync", Duration::from_secs(20), || {
            kit_connection(primary)
                .and_then(|mut c| {
                    redis::cmd("INFO")
                        .arg("replication")
                        .query::<String>(&mut c)
                })
                .is_ok_and(|info| info.matches(",state=online,").count() == 2)
        });
        let sentinels = (0..3)
            .map(|_| sentinel(primary, sentinel_password))
            .collect::<Vec<_>>();
        for sentinel in &sentinels {
            let port = sentinel.port();
            wait_until(
                "each Sentinel knows the replicas and the other Sentinels",
                Duration::from_secs(30),
                || {
                    let count = |what: &str| {
                        sentinel_connection(port, sentinel_password)
                            .and_then(|mut c| {
                                redis::cmd("SENTINEL")
                                    .arg(what)
                                    .arg(SENTINEL_MASTER)
                                    .query::<Vec<redis::Value>>(&mut c)
                            })
                            .map_or(0, |v| v.len())
                    };
                    count("replicas") == 2 && count("sentinels") == 2
                },
            );
        }
        SentinelSet {
            servers,
            _proxies: proxies,
            sentinels,
            sentinel_password: sentinel_password.map(str::to_owned),
        }
    }

    /// `redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>,127.0.0.1:<s3>/tollgate-test`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!("redis+sentinel://{}/{SENTINEL_MASTER}", hosts.join(","))
    }

    /// The port of the primary the Sentinels name now.
    pub fn primary_port(&self) -> u16 {
        for sentinel in &self.sentinels {
            let password = self.sentinel_password.as_deref();
            let named = sentinel_connection(sentinel.port(), password).and_then(|mut c| {
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(SENTINEL_MASTER)
                    .query::<(String, u16)>(&mut c)
            });
            if let Ok((_, port)) = named {
                return port;
            }
        }
        panic!("no Sentinel names a primary");
    }

    /// Kills the primary (SIGKILL: what it had not sent its replicas is gone) and returns its
    /// port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port();
        let server = self
            .servers
            .iter_mut()
            .find(|s| s.port() == port)
            .expect("the primary is one of the set's servers");
        server.kill();
        port
    }

    /// Waits until the Sentinels name a primary other than `old` that answers as one; returns
    /// its port.
    pub fn wait_failover(&self, old: u16, within: Duration) -> u16 {
        let mut promoted = 0;
        wait_until("a replica promoted", within, || {
            promoted = self.primary_port();
            promoted != old && answers_as_primary(promoted)
        });
        promoted
    }
}

/// A connection to the Sentinel on `port`, authenticated with `password` if it requires one.
fn sentinel_connection(port: u16, password: Option<&str>) -> redis::RedisResult<redis::Connection> {
    let mut connection = kit_connection(port)?;
    if let Some(password) = password {
        redis::cmd("AUTH")
            .arg(password)
            .query::<()>(&mut connection)?;
    }
    Ok(connection)
}

/// A Sentinel on a free port watching the primary on `primary`, quick to act: down after 1 s,
/// and a replica its reconfiguration missed after a failover is set right within 10 s (60 s
/// would outlast the tests' patience on a loaded machine).
/// With `password`, it requires it of its clients and of the other Sentinels.
fn sentinel(primary: u16, password: Option<&str>) -> RedisServer {
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let port = free_port();
    let config = dir.path().join("sentinel.conf");
    std::fs::write(
        &config,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\n\
             sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
             sentinel failover-timeout {SENTINEL_MASTER} 10000\n\
             sentinel parallel-syncs {SENTINEL_MASTER} 2\n{auth}",
            dir = dir.path().display(),
            auth = password
                .map(|p| format!("requirepass {p}\nsentinel sentinel-pass {p}\n"))
                .unwrap_or_default(),
        ),
    )
    .expect("cannot write the Sentinel's configuration");
    let child = Command::new(binary())
        .arg(&config)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start a Sentinel ({}): {e}", binary().display()));
    let server = RedisServer {
        port,
        password: None,
        tls: false,
        dir,
        child: Some(child),
        args: Vec::new(),
    };
    wait_until("the Sentinel listens", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    server
}

/// A Redis Cluster: three masters with a replica each, failing a master over about two seconds
/// after it dies (node timeout 1 s, replicas promoted however far behind).
#[derive(Debug)]
pub struct ClusterSet {
    nodes: Vec<RedisServer>,
}

impl ClusterSet {
    /// Starts six nodes, makes them a cluster (`redis-cli --cluster create`, on the `PATH` or in
    /// `TOLLGATE_REDIS_CLI`) and waits until every slot is served.
    pub fn start() -> ClusterSet {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                RedisServer::start_with_args(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-replica-validity-factor",
                    "0",
                    // A master back as a replica copies its new master at once.
                    "--repl-diskless-sync-delay",
                    "0",
                ])
            })
            .collect();
        let cli = std::env::var_os("TOLLGATE_REDIS_CLI")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("redis-cli"));
        let status = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} (install Redis, or set TOLLGATE_REDIS_CLI): {e}",
                    cli.display()
                )
            });
        assert!(status.success(), "redis-cli --cluster create failed");
        let set = ClusterSet { nodes };
        for node in &set.nodes {
            let port = node.port();
            wait_until("the cluster state ok", Duration::from_secs(20), || {
                kit_connection(port)
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
        }
        set.wait_replicas();
        set
    }

    /// Waits until every running master has a replica in sync.
    fn wait_replicas(&self) {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let port = node.port();
            wait_until(
                "every master with a replica in sync",
                Duration::from_secs(20),
                || {
                    kit_connection(port)
                        .and_then(|mut c| {
                            redis::cmd("INFO")
                                .arg("replication")
                                .query::<String>(&mut c)
                        })
                        .is_ok_and(|info| {
                            info.contains("role:slave") || info.contains(",state=online,")
                        })
                },
            );
        }
    }

    /// Starts the node on `port` again, empty, with its cluster identity: a master that was
    /// failed over comes back as a replica of the one promoted. Waits until every master has a
    /// replica in sync again.
    pub fn restart(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port() == port) {
            node.restart();
        }
        self.wait_replicas();
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The ports of the master serving `key`'s slot and of its replicas, as a running node says.
    pub fn slot_nodes(&self, key: &str) -> (u16, Vec<u16>) {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let Ok(mut c) = kit_connection(node.port()) else {
                continue;
            };
            let Ok(slot) = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query::<i64>(&mut c)
            else {
                continue;
            };
            let Ok(ranges) = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query::<Vec<Vec<redis::Value>>>(&mut c)
            else {
                continue;
            };
            for range in ranges {
                // [start, end, [host, port, id, ...] for the master, then for each replica]
                let bound = |i: usize| match range.get(i) {
                    Some(redis::Value::Int(n)) => *n,
                    _ => -1,
                };
                if !(bound(0)..=bound(1)).contains(&slot) {
                    continue;
                }
                let ports: Vec<u16> = range[2..]
                    .iter()
                    .filter_map(|node| match node {
                        redis::Value::Array(node) => match node.get(1) {
                            Some(redis::Value::Int(port)) => u16::try_from(*port).ok(),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect();
                if let Some(master) = ports.first() {
                    return (*master, replicas_of(*master));
                }
            }
        }
        panic!("no running node knows who serves {key:?}");
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .expect("a node of the cluster")
    }

    /// Cuts the replication links of the master on `port` (`CLIENT KILL TYPE replica`): what it
    /// takes from now on it alone holds, until its replicas reconnect (about a second later,
    /// unless [paused](RedisServer::pause)).
    pub fn cut_replication(&self, port: u16) {
        let mut connection = kit_connection(port).expect("connect to the master");
        let killed = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("replica")
            .query::<i64>(&mut connection)
            .expect("CLIENT KILL TYPE replica");
        assert!(
            killed > 0,
            "the master on {port} had no replica link to cut"
        );
    }

    /// Kills (SIGKILL) the node on `port`.
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port() == port) {
            node.resume();
            node.kill();
        }
    }

    /// Waits until a running node names a master for `key`'s slot other than `old`, and that
    /// master answers as one; returns its port.
    pub fn wait_failover(&self, key: &str, old: u16, within: Duration) -> u16 {
        let mut promoted = 0;
        wait_until("a replica promoted in the cluster", within, || {
            promoted = self.slot_nodes(key).0;
            promoted != old && answers_as_primary(promoted)
        });
        promoted
    }
}
