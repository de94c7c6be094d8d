//! An independent OAuth client library (Python's authlib) obtains, introspects, refreshes and
//! revokes tokens against the real binary. The test installs authlib into a virtualenv under
//! `target/` on first use (PyPI is reachable from CI machines).

mod support;

use std::path::PathBuf;
use std::process::Command;
use support::*;

fn python_with_authlib() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root.join("target/interop-venv");
    let python = venv.join("bin/python");
    let requirements = root.join("tests/interop/requirements.txt");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import authlib, requests"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for the interop test");
        assert!(status.success(), "cannot create a virtualenv");
        let status = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cannot install tests/interop/requirements.txt"
        );
    }
    python
}

#[test]
fn authlib_obtains_introspects_refreshes_and_revokes() {
    let python = python_with_authlib();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config(dir.path()));
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/authlib_flow.py");
    let out = Command::new(python)
        .arg(script)
        .env("TOLLGATE_URL", &server.base)
        .env("CLIENT_ID", INTEGRATION.0)
        .env("CLIENT_SECRET", INTEGRATION.1)
        .env("USERNAME", "admin")
        .env("PASSWORD", "admin-password")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "authlib flow failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("interop ok"), "{stdout}");
    server.stop();
}
