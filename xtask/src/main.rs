//! `cargo xtask test [ARGS...]`: the README's test command.
//!
//! The tests start real servers of their own (redis-server, PostgreSQL's `initdb`/`pg_ctl`,
//! nginx, Python upstreams), so a fresh machine lacks some of them. This finds what is missing,
//! installs it with the system's package manager when it can (Debian/Ubuntu's `apt-get`, as
//! root), or says in one line exactly what to install when it cannot, then runs
//! `cargo test --workspace --all-features ARGS...` and closes with the tally
//! `tests: N passed, M failed`.
//!
//! `cargo xtask deps` only checks and installs.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

/// A program the tests need, the Debian package that brings it, and what needs it.
struct Need {
    what: &'static str,
    found: fn() -> bool,
    package: &'static str,
    why: &'static str,
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn postgres_server() -> bool {
    std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
        versions
            .flatten()
            .any(|v| v.path().join("bin/initdb").is_file())
    }) || on_path("initdb")
}

fn python_venv() -> bool {
    Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const NEEDS: &[Need] = &[
    Need {
        what: "redis-server",
        found: || on_path("redis-server"),
        package: "redis-server",
        why: "replication, gateway and follower tests",
    },
    Need {
        what: "openssl",
        found: || on_path("openssl"),
        package: "openssl",
        why: "certificates for the TLS Redis tests",
    },
    Need {
        what: "curl",
        found: || on_path("curl"),
        package: "curl",
        why: "the TLS listener tests (HTTPS over HTTP/1.1 and HTTP/2)",
    },
    Need {
        what: "PostgreSQL server (initdb, pg_ctl)",
        found: postgres_server,
        package: "postgresql",
        why: "the PostgreSQL store and replica tests",
    },
    Need {
        what: "nginx",
        found: || on_path("nginx") || Path::new("/usr/sbin/nginx").is_file(),
        package: "nginx",
        why: "the gateway's forward-auth test behind nginx",
    },
    Need {
        what: "python3 with venv",
        found: python_venv,
        package: "python3-venv",
        why: "the interop, schemathesis and gateway upstream tests (which also need PyPI)",
    },
    Need {
        what: "node and npm",
        found: || on_path("node") && on_path("npm"),
        package: "nodejs npm",
        why: "the back-channel logout test against node-oidc-provider (which also needs the npm registry)",
    },
];

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("test") => {
            if let Err(message) = install_missing() {
                eprintln!("xtask: {message}");
                return ExitCode::FAILURE;
            }
            run_tests(args.collect())
        }
        Some("deps") => match install_missing() {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("xtask: {message}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!(
                "usage: cargo xtask test [ARGS...]   install what the tests need, then run every test\n       \
                 cargo xtask deps              only install what the tests need"
            );
            ExitCode::from(2)
        }
    }
}

/// Installs the missing programs with `apt-get` when running as root on a Debian-like system;
/// otherwise fails with one line naming the packages to install.
fn install_missing() -> Result<(), String> {
    let missing: Vec<&Need> = NEEDS.iter().filter(|need| !(need.found)()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    for need in &missing {
        eprintln!("xtask: missing {} ({})", need.what, need.why);
    }
    let packages: Vec<&str> = missing.iter().map(|need| need.package).collect();
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    if !on_path("apt-get") || !as_root {
        return Err(format!(
            "install these packages, then run `cargo xtask test` again: sudo apt-get install {} \
             (or your system's packages of the same programs)",
            packages.join(" ")
        ));
    }
    eprintln!("xtask: apt-get install {}", packages.join(" "));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}"))
            .and_then(|status| {
                status
                    .success()
                    .then_some(())
                    .ok_or_else(|| format!("apt-get {} failed ({status})", args.join(" ")))
            })
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(&packages);
    apt(&install)?;
    let still: Vec<&str> = NEEDS
        .iter()
        .filter(|need| !(need.found)())
        .map(|need| need.what)
        .collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!("still missing after apt-get: {}", still.join(", ")))
    }
}

/// `cargo test --workspace --all-features ARGS...`, its output passed through, then the tally.
fn run_tests(extra: Vec<String>) -> ExitCode {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let child = Command::new(cargo)
        .args(["test", "--workspace", "--all-features"])
        .args(&extra)
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("xtask: cannot run cargo test: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut passed, mut failed) = (0u64, 0u64);
    if let Some(stdout) = child.stdout.take() {
        use std::io::{BufRead, BufReader, Write};
        let mut out = std::io::stdout().lock();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(out, "{line}");
            // `test result: ok. 12 passed; 0 failed; ...`
            if let Some(rest) = line.strip_prefix("test result: ") {
                let count = |word: &str| {
                    rest.split(';')
                        .find_map(|part| {
                            part.trim()
                                .strip_suffix(word)?
                                .trim()
                                .rsplit(' ')
                                .next()?
                                .parse::<u64>()
                                .ok()
                        })
                        .unwrap_or(0)
                };
                passed += count(" passed");
                failed += count(" failed");
            }
        }
    }
    let status = child.wait();
    // The last test binary cargo runs may have no tests ("0 passed"): close on the total, in the
    // plain form CI reads.
    println!("tests: {passed} passed, {failed} failed");
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
