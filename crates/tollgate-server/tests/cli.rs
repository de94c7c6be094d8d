//! The command line: config errors name the key and the line; `hash-password` and `keygen`
//! produce what `serve` accepts; SIGTERM shuts down cleanly.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use support::*;

fn tollgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
}

fn serve_error(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let out = tollgate()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("tollgate: "), "{stderr}");
    last
}

#[test]
fn a_bad_config_is_one_line_naming_the_key_and_the_line() {
    let err = serve_error(
        "issuer = \"http://x\"\n[[clients]]\nid = \"a\"\nsecret_env = \"PATH\"\ngrants = [\"pasword\"]\n",
    );
    assert!(err.contains("bad.toml:5:"), "{err}");
    assert!(
        err.contains("clients[0].grants") && err.contains("pasword"),
        "{err}"
    );

    let err = serve_error("issuer = \"http://x\"\nlisten = \"nowhere\"\n");
    assert!(
        err.contains("bad.toml:2:") && err.contains("listen"),
        "{err}"
    );

    let err = serve_error(
        "issuer = \"http://x\"\n[[users]]\nusername = \"u\"\npassword_hash = \"hunter2\"\n",
    );
    assert!(
        err.contains("bad.toml:4:") && err.contains("users[0].password_hash"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the error must not echo the secret: {err}"
    );

    let err = serve_error(
        "issuer = \"http://x\"\n[[clients]]\nid = \"a\"\nsecret_env = \"TOLLGATE_TEST_UNSET_VAR\"\ngrants = []\n",
    );
    assert!(
        err.contains("bad.toml:4:") && err.contains("TOLLGATE_TEST_UNSET_VAR"),
        "{err}"
    );
    let err = serve_error("issuer = \"http://x\"\ntenants = [\"/a//b\"]\n");
    assert!(
        err.contains("bad.toml:2:") && err.contains("tenants"),
        "{err}"
    );
}

#[test]
fn hash_password_reads_stdin_and_keygen_writes_a_usable_key() {
    let mut child = tollgate()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret!\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let empty = tollgate()
        .arg("hash-password")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!empty.status.success(), "an empty password is refused");

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.der");
    let out = tollgate()
        .args([
            "keygen",
            "--kid",
            "key-2026",
            "--algorithm",
            "ES256",
            "--out",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let again = tollgate()
        .args(["keygen", "--kid", "x", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!again.status.success(), "keygen never overwrites a key");

    // A server configured with that key and the new client secret hash.
    let config = format!(
        "listen = \"127.0.0.1:0\"\nissuer = \"http://issuer\"\ndata_dir = {:?}\n\
         [[keys]]\nkid = \"key-2026\"\nalgorithm = \"ES256\"\nfile = \"k.der\"\nsigning = true\n\
         [[clients]]\nid = \"c\"\nsecret_hash = \"{hash}\"\ngrants = [\"client_credentials\"]\n",
        dir.path().join("data").display().to_string()
    );
    let server = Server::start(dir.path(), &config);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let jwks: serde_json::Value = http()
            .get(server.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(jwks["keys"][0]["kid"], "key-2026");
        assert_eq!(jwks["keys"][0]["alg"], "ES256");
        let (status, body) = post_form(
            &http(),
            &server.url("/connect/token"),
            ("c", "s3cret!"),
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_eq!(status, 200, "{body}");
    });
    server.stop();
}

#[test]
fn with_no_key_configured_one_is_generated_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let kid = |server: &Server| {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let jwks: serde_json::Value = http()
                .get(server.url("/.well-known/jwks.json"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            jwks["keys"][0]["kid"].as_str().unwrap().to_owned()
        })
    };
    let server = Server::start(dir.path(), &config);
    let first = kid(&server);
    server.stop();
    let key_file = dir.path().join("signing-key.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key file is private to its owner");
    }
    let server = Server::start(dir.path(), &config);
    assert_eq!(kid(&server), first);
    let logs = server.logs.clone();
    server.stop();
    let logs = logs.lock().unwrap().join("\n");
    assert!(logs.contains("store flushed"), "{logs}");
    assert!(!logs.contains("secret-"), "no secret in the logs");
}

/// `tollgate serve` on `config` (written to `dir/name`); it must fail. Its last line.
fn serve_fails(dir: &std::path::Path, name: &str, config: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, config).unwrap();
    let out = tollgate()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("tollgate: "), "{stderr}");
    last
}

#[test]
fn a_config_with_an_error_touches_nothing_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    let data = dir.path().join("data");
    let valid = config(&data).replace(&format!("{:?}", data.display().to_string()), "\"../data\"");
    assert!(valid.contains("data_dir = \"../data\""));

    // An error at the very end of the file.
    let err = serve_fails(
        &conf,
        "a.toml",
        &format!(
            "{valid}\n[[clients]]\nid = \"late\"\nsecret_env = \"PATH\"\ngrants = [\"pasword\"]\n"
        ),
    );
    assert!(err.contains("pasword"), "{err}");
    // A key file that does not exist.
    let err = serve_fails(
        &conf,
        "b.toml",
        &format!(
            "{valid}\n[[keys]]\nkid = \"k\"\nalgorithm = \"EdDSA\"\nfile = \"missing.der\"\nsigning = true\n"
        ),
    );
    assert!(
        err.contains("keys[0].file") && err.contains("missing.der"),
        "{err}"
    );
    // A key file that is not a key.
    std::fs::write(conf.join("junk.der"), b"not a key").unwrap();
    let err = serve_fails(
        &conf,
        "c.toml",
        &format!(
            "{valid}\n[[keys]]\nkid = \"k\"\nalgorithm = \"EdDSA\"\nfile = \"junk.der\"\nsigning = true\n"
        ),
    );
    assert!(err.contains("keys[0].file"), "{err}");
    // A port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    let err = serve_fails(
        &conf,
        "d.toml",
        &valid.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{port}\"")),
    );
    assert!(err.contains(&format!("cannot listen on {port}")), "{err}");

    assert!(!data.exists(), "a failed start created {}", data.display());
    let made: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(made, ["conf"], "nothing but the configuration directory");
}

#[test]
fn two_servers_never_share_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let first = Server::start(dir.path(), &config);
    let err = serve_fails(dir.path(), "second.toml", &config);
    assert!(
        err.contains(&dir.path().display().to_string()) && err.contains("in use"),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", first.pid())),
        "the refusal names the other process: {err}"
    );
    first.stop();
    // Once the first has stopped, the directory is free again.
    Server::start(dir.path(), &config).stop();
}

/// `hash-password` on a pseudo-terminal (through python3's `pty` module): what the terminal
/// showed, and whether it succeeded.
fn hash_password_at_a_terminal(first: &str, second: &str) -> Option<(bool, String)> {
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/pty_hash_password.py"
        ))
        .arg(env!("CARGO_BIN_EXE_tollgate"))
        .args([first, second])
        .output();
    match out {
        Ok(out) => Some((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("python3 is not installed: the pseudo-terminal test is skipped");
            None
        }
        Err(e) => panic!("cannot run python3: {e}"),
    }
}

#[test]
fn hash_password_at_a_terminal_asks_twice_without_echo() {
    let Some((ok, shown)) = hash_password_at_a_terminal("correct horse", "correct horse") else {
        return;
    };
    assert!(ok, "{shown}");
    assert!(
        shown.contains("Password: ") && shown.contains("Again: "),
        "{shown}"
    );
    assert!(
        !shown.contains("correct horse"),
        "the password was echoed: {shown}"
    );
    let hash = shown
        .split_whitespace()
        .find(|w| w.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("no hash: {shown}"));
    tollgate_issuer::PasswordHash::parse(hash).unwrap();

    let (ok, shown) = hash_password_at_a_terminal("one", "two").unwrap();
    assert!(!ok, "{shown}");
    assert!(
        shown.contains("differ") && !shown.contains("$argon2id$"),
        "{shown}"
    );
}

#[test]
fn keygen_takes_a_bare_file_name_and_prints_an_absolute_path() {
    let dir = tempfile::tempdir().unwrap();
    let out = tollgate()
        .current_dir(dir.path())
        .args(["keygen", "--kid", "k \"1\"", "--out", "k.der"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: toml::Table = String::from_utf8(out.stdout).unwrap().parse().unwrap();
    let key = &printed["keys"][0];
    assert_eq!(key["kid"].as_str(), Some("k \"1\""));
    let file = std::path::Path::new(key["file"].as_str().unwrap());
    assert!(file.is_absolute() && file.exists(), "{}", file.display());
}

#[test]
fn no_command_prints_the_help_and_fails_as_a_usage_error() {
    let out = tollgate().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Usage: tollgate"), "{stderr}");
    assert!(out.stdout.is_empty());
    let help = tollgate().arg("--help").output().unwrap();
    assert!(help.status.success());
}
