//! A private PostgreSQL for tests: `initdb` and `pg_ctl` from the machine's PostgreSQL binaries,
//! in a temporary directory, on a free port of 127.0.0.1, with trust authentication; stopped
//! (`pg_ctl stop -m immediate`) and removed when dropped. Never the machine's shared instance.
//!
//! Available with the `test-util` feature.
//!
//! - The binaries are the newest `/usr/lib/postgresql/*/bin` (Debian and Ubuntu's layout), or
//!   the directory `TOLLGATE_PG_BIN` names.
//! - `initdb` refuses to run as root. As root, the server runs as the user `postgres` (which the
//!   `postgresql` package creates) through `runuser -u postgres --`; its directory is handed to
//!   that user.
//! - With `TOLLGATE_TEST_POSTGRES_URL` set (a server the tests may create databases on), or when
//!   the binaries are missing and that variable is set, no server is started: each
//!   [`PostgresServer`] is a fresh database `t_<random>` on that server instead, and
//!   [`stop`](PostgresServer::stop) and [`start_again`](PostgresServer::start_again) are
//!   unavailable: tests that restart the server use [`PostgresServer::start_private`].
//!   The databases are left behind: point the variable at a throwaway server.
//! - [`PostgresServer::start_standby`] makes a streaming standby of a private server
//!   (`pg_basebackup -R`), asynchronous or synchronous (`synchronous_standby_names = '*'` on the
//!   primary); [`kill`](PostgresServer::kill) crashes a server (`SIGKILL` to the postmaster) and
//!   [`promote`](PostgresServer::promote) makes a standby the primary; [`multi_host_url`] names
//!   several servers with `target_session_attrs=read-write`, as a failover setup would.
//! - With neither, [`PostgresServer::start`] panics with a message saying what is missing: a test
//!   never passes without PostgreSQL.

use crate::PostgresTarget;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming an existing server to create test databases on.
pub const URL_ENV: &str = "TOLLGATE_TEST_POSTGRES_URL";

/// A PostgreSQL database of the test's own: a private server, or a fresh database on the server
/// of [`URL_ENV`].
#[derive(Debug)]
pub struct PostgresServer {
    kind: Kind,
    url: String,
    /// The password of the user `tollgate`, for a private server that requires one.
    password: Option<String>,
}

#[derive(Debug)]
enum Kind {
    Private {
        bin: PathBuf,
        dir: tempfile::TempDir,
        port: u16,
        /// `Some("postgres")` when running as root.
        run_as: Option<&'static str>,
    },
    External,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free local port")
}

/// The newest PostgreSQL's `bin` directory, if any.
fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TOLLGATE_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", hasher.finish())
}

impl PostgresServer {
    /// Starts a private server (or makes a database on [`URL_ENV`]'s server) and waits until it
    /// accepts connections. Panics, saying why, if neither is possible.
    pub fn start() -> PostgresServer {
        if let Ok(url) = std::env::var(URL_ENV) {
            return Self::external(&url);
        }
        Self::start_private()
    }

    /// Starts a private server whatever [`URL_ENV`] says: for tests that stop and restart it.
    /// Panics, saying why, if the PostgreSQL binaries are missing.
    pub fn start_private() -> PostgresServer {
        Self::start_private_with(None, None)
    }

    /// Starts a private server on which the user `tollgate` must give `password`
    /// (`scram-sha-256`): [`url`](Self::url) has no password, [`target`](Self::target) has it.
    pub fn start_private_with_password(password: &str) -> PostgresServer {
        Self::start_private_with(Some(password.to_owned()), None)
    }

    /// Starts a private server with `ssl = on`, presenting `certificate_pem` (its chain) with
    /// `key_pem`. Plain connections are still accepted ([`url`](Self::url) has no `sslmode`):
    /// the tests choose.
    pub fn start_private_with_tls(certificate_pem: &str, key_pem: &str) -> PostgresServer {
        Self::start_private_with(None, Some((certificate_pem, key_pem, None)))
    }

    /// [`start_private_with_tls`](Self::start_private_with_tls) on which the user `tollgate`
    /// must give `password` (`scram-sha-256`, which TLS can bind to the connection).
    pub fn start_private_with_password_and_tls(
        password: &str,
        certificate_pem: &str,
        key_pem: &str,
    ) -> PostgresServer {
        Self::start_private_with(
            Some(password.to_owned()),
            Some((certificate_pem, key_pem, None)),
        )
    }

    /// [`start_private_with_tls`](Self::start_private_with_tls), and the database `tollgate`
    /// (the one [`url`](Self::url) names) only over TLS with a client certificate signed by
    /// `client_ca_pem` (`hostssl ... clientcert=verify-ca`); other databases as before.
    pub fn start_private_with_client_certificates(
        certificate_pem: &str,
        key_pem: &str,
        client_ca_pem: &str,
    ) -> PostgresServer {
        Self::start_private_with(None, Some((certificate_pem, key_pem, Some(client_ca_pem))))
    }

    /// The directory of a private server's Unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        self.private_dir()
    }

    fn start_private_with(
        password: Option<String>,
        tls: Option<(&str, &str, Option<&str>)>,
    ) -> PostgresServer {
        let server = Self::empty_private(password);
        let mut initdb = vec!["-D", "{data}", "-U", "tollgate", "-E", "UTF8", "--no-sync"];
        match &server.password {
            Some(password) => {
                let file = server.private_dir().join("pwfile");
                std::fs::write(&file, password).expect("cannot write the password file");
                server.hand_over(&file);
                initdb.extend(["-A", "scram-sha-256", "--pwfile={dir}/pwfile"]);
            }
            None => initdb.extend(["-A", "trust"]),
        }
        server.run("initdb", &initdb);
        if let Some((certificate, key, client_ca)) = tls {
            server.enable_tls(certificate, key, client_ca);
        }
        server.start_again();
        server.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                "{port}",
                "-U",
                "tollgate",
                "tollgate",
            ],
        );
        server
    }

    /// A private server's directory and port, nothing in it yet.
    fn empty_private(password: Option<String>) -> PostgresServer {
        let Some(bin) = find_bin() else {
            panic!(
                "PostgreSQL tests need either the PostgreSQL server binaries \
                 (/usr/lib/postgresql/*/bin/initdb; `apt-get install postgresql`, or set \
                 TOLLGATE_PG_BIN) or {URL_ENV}=postgresql://user@host/db naming a server the \
                 tests may create databases on"
            );
        };
        let run_as = is_root().then_some("postgres");
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        if let Some(user) = run_as {
            let status = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(dir.path())
                .status()
                .expect("cannot run chown");
            assert!(
                status.success(),
                "chown {user} {}: is there a `{user}` user (the postgresql package makes it)?",
                dir.path().display()
            );
        }
        let port = free_port();
        PostgresServer {
            url: format!("postgresql://tollgate@127.0.0.1:{port}/tollgate"),
            kind: Kind::Private {
                bin,
                dir,
                port,
                run_as,
            },
            password,
        }
    }

    /// Hands `file` to the user the server runs as (when running as root).
    fn hand_over(&self, file: &Path) {
        if let Kind::Private {
            run_as: Some(user), ..
        } = &self.kind
        {
            let status = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(file)
                .status()
                .expect("cannot run chown");
            assert!(status.success(), "chown {}", file.display());
        }
    }

    /// Writes the server's certificate and key into its data directory (the key readable by
    /// the server's user alone, as PostgreSQL demands) and turns `ssl` on; with `client_ca`,
    /// requires client certificates from it for the database `tollgate`.
    fn enable_tls(&self, certificate: &str, key: &str, client_ca: Option<&str>) {
        if !matches!(self.kind, Kind::Private { .. }) {
            return;
        }
        let data = self.private_dir().join("data");
        let mut files = vec![("server.crt", certificate), ("server.key", key)];
        if let Some(ca) = client_ca {
            files.push(("client-ca.crt", ca));
        }
        for (name, contents) in files {
            let path = data.join(name);
            std::fs::write(&path, contents).expect("cannot write the server's TLS files");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("cannot chmod the server's TLS files");
            self.hand_over(&path);
        }
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("cannot read postgresql.conf");
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        if client_ca.is_some() {
            text.push_str("ssl_ca_file = 'client-ca.crt'\n");
            // The first matching line wins: `tollgate` needs a certificate; `createdb` (on the
            // maintenance database) and the others do not.
            let hba = data.join("pg_hba.conf");
            let rules = std::fs::read_to_string(&hba).expect("cannot read pg_hba.conf");
            std::fs::write(
                &hba,
                format!(
                    "hostssl tollgate all 127.0.0.1/32 trust clientcert=verify-ca\n\
                     host tollgate all 127.0.0.1/32 reject\n{rules}"
                ),
            )
            .expect("cannot write pg_hba.conf");
        }
        std::fs::write(&conf, text).expect("cannot write postgresql.conf");
    }

    /// Starts a streaming standby of this private server, on a free port of its own, and waits
    /// until it streams. With `synchronous`, the primary then waits for the standby to have
    /// flushed each commit before confirming it (`synchronous_standby_names = '*'`,
    /// `synchronous_commit = on`): a commit the client saw succeed survives the primary's loss.
    /// Without, the primary confirms commits before the standby has them.
    pub fn start_standby(&self, synchronous: bool) -> PostgresServer {
        let primary = self.port();
        let standby = Self::empty_private(None);
        let primary_port = primary.to_string();
        // `-R`: writes `standby.signal` and `primary_conninfo`; the WAL the copy needs is
        // streamed alongside it.
        standby.run(
            "pg_basebackup",
            &[
                "-D",
                "{data}",
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port,
                "-U",
                "tollgate",
                "-X",
                "stream",
                "-R",
                // An immediate checkpoint: the default spreads it over minutes.
                "--checkpoint=fast",
                "--no-sync",
            ],
        );
        standby.start_again();
        if synchronous {
            self.sql("ALTER SYSTEM SET synchronous_standby_names = '*'");
            self.sql("SELECT pg_reload_conf()");
        }
        let state = if synchronous { "sync" } else { "async" };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.sql(&format!(
            "SELECT count(*) FROM pg_stat_replication \
             WHERE state = 'streaming' AND sync_state = '{state}'"
        )) != "1"
        {
            assert!(
                Instant::now() < deadline,
                "the standby on {} never streamed ({state}) from {primary}",
                standby.port()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        standby
    }

    /// Runs one SQL statement through `psql` on the database `postgres`; returns its output.
    pub fn sql(&self, statement: &str) -> String {
        self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                "{port}",
                "-U",
                "tollgate",
                "-d",
                "postgres",
                "-tAXc",
                statement,
            ],
        )
    }

    /// The port of a private server.
    pub fn port(&self) -> u16 {
        match &self.kind {
            Kind::Private { port, .. } => *port,
            Kind::External => panic!("a server from {URL_ENV} has no port of the test's own"),
        }
    }

    /// Crashes the server: `SIGKILL` to the postmaster (no shutdown, no checkpoint, nothing
    /// sent to standbys), then waits until it is gone. Its backends notice the postmaster's
    /// death and exit.
    pub fn kill(&self) {
        let pid_file = self.private_dir().join("data").join("postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
            .unwrap_or_else(|| panic!("no running server ({})", pid_file.display()));
        let status = Command::new("kill")
            .args(["-9", &pid])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -9 {pid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Command::new("kill")
            .args(["-0", &pid])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                Instant::now() < deadline,
                "the postmaster {pid} did not die"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // Nothing must try to stop it again (its pid may be someone else's by then).
        let _ = std::fs::remove_file(pid_file);
    }

    /// Promotes a standby to primary (`pg_ctl promote`) and waits until it accepts writes.
    pub fn promote(&self) {
        self.run("pg_ctl", &["-D", "{data}", "-w", "promote"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.sql("SELECT pg_is_in_recovery()") != "f" {
            assert!(Instant::now() < deadline, "the standby was not promoted");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn external(url: &str) -> PostgresServer {
        let base = PostgresTarget::new(url).unwrap_or_else(|e| panic!("{URL_ENV}: {e}"));
        let name = format!("t_{}", random_suffix());
        // On a thread of its own: `start` is synchronous but usually called inside a test's
        // runtime, where blocking on another runtime is refused.
        let create = {
            let (base, name) = (base.clone(), name.clone());
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cannot start a runtime");
                runtime.block_on(async {
                    let (client, connection) = base
                        .config()
                        .connect(base.tls())
                        .await
                        .unwrap_or_else(|e| panic!("{URL_ENV} ({base}): cannot connect: {e}"));
                    tokio::spawn(connection);
                    client
                        .batch_execute(&format!("CREATE DATABASE {name}"))
                        .await
                        .unwrap_or_else(|e| panic!("{URL_ENV} ({base}): CREATE DATABASE: {e}"));
                });
            }
        };
        if let Err(panic) = std::thread::spawn(create).join() {
            std::panic::resume_unwind(panic);
        }
        let mut parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{URL_ENV}: {e}"));
        parsed.set_path(&name);
        PostgresServer {
            url: parsed.to_string(),
            kind: Kind::External,
            password: None,
        }
    }

    /// Creates a fresh, empty database `t_<random>` on this server and returns it: for tests that
    /// need several stores on one server (the contract kit wants a fresh store per check).
    pub async fn create_database(&self) -> PostgresTarget {
        let base = self.target();
        let name = format!("t_{}", random_suffix());
        let (client, connection) = base
            .config()
            .connect(base.tls())
            .await
            .unwrap_or_else(|e| panic!("{base}: cannot connect: {e}"));
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("{base}: CREATE DATABASE {name}: {e}"));
        drop(client);
        let _ = connection.await;
        base.with_dbname(&name)
    }

    /// The URL of the test's database (user `tollgate` and never a password, for a private
    /// server).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// [`url`](Self::url), parsed.
    pub fn target(&self) -> PostgresTarget {
        PostgresTarget::new(&self.url)
            .expect("the test URL parses")
            .with_password(self.password.clone())
    }

    fn private_dir(&self) -> &Path {
        self.data_dir()
            .expect("only a private server has a directory")
    }

    /// Stops the server at once (`-m immediate`: as a crash would), keeping its data.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", "{data}", "-m", "immediate", "-w", "stop"]);
    }

    /// Starts the server again after [`stop`](Self::stop), on the same port and data, and waits
    /// until it accepts connections.
    pub fn start_again(&self) {
        let options = "-c listen_addresses=127.0.0.1 -p {port} -k {dir}";
        self.run(
            "pg_ctl",
            &[
                "-D",
                "{data}",
                "-l",
                "{dir}/log",
                "-o",
                options,
                "-w",
                "start",
            ],
        );
        self.wait_ready(Duration::from_secs(30));
    }

    fn wait_ready(&self, within: Duration) {
        let Kind::Private { port, .. } = &self.kind else {
            return;
        };
        let deadline = Instant::now() + within;
        while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `program` of the PostgreSQL binaries with `{data}`, `{dir}` and `{port}` put in;
    /// returns its standard output, trimmed.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let Kind::Private {
            bin,
            dir,
            port,
            run_as,
        } = &self.kind
        else {
            panic!("stop and start need a private server, not one from {URL_ENV}");
        };
        let fill = |arg: &str| {
            arg.replace("{data}", &dir.path().join("data").display().to_string())
                .replace("{dir}", &dir.path().display().to_string())
                .replace("{port}", &port.to_string())
        };
        let program = bin.join(program);
        let mut command = match run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        command
            .args(args.iter().map(|a| fill(a)))
            .current_dir(dir.path())
            .stdin(Stdio::null());
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password);
        }
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        assert!(
            output.status.success(),
            "{} {args:?} failed: {}{}\n{log}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn data_dir(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Private { dir, .. } => Some(dir.path()),
            Kind::External => None,
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(dir) = self.data_dir()
            && dir.join("data").join("postmaster.pid").exists()
        {
            // Best effort: a panic in a drop during a failed test would hide its message.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.stop()));
        }
    }
}

/// A URL naming `servers` in order with `target_session_attrs=read-write`: a connection tries
/// each in turn and keeps the first that accepts writes (the primary, whichever it is now).
pub fn multi_host_url(servers: &[&PostgresServer]) -> String {
    let hosts: Vec<String> = servers
        .iter()
        .map(|server| format!("127.0.0.1:{}", server.port()))
        .collect();
    format!(
        "postgresql://tollgate@{}/tollgate?target_session_attrs=read-write",
        hosts.join(",")
    )
}

/// A plain client on `target` (its password included), for looking at the tables behind a
/// store's back.
pub async fn client(target: &PostgresTarget) -> tokio_postgres::Client {
    let (client, connection) = target
        .config()
        .connect(target.tls())
        .await
        .unwrap_or_else(|e| panic!("{target}: cannot connect: {e}"));
    tokio::spawn(connection);
    client
}
