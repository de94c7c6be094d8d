//! The command line: `tollgate serve`, `tollgate gateway`, `tollgate revoke`,
//! `tollgate hash-password`, `tollgate keygen`, `tollgate migrate-store`.

use crate::{migrate, revoke, serve, setup};
use clap::{Parser, Subcommand};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use tollgate_core::{SigningAlgorithm, SigningKey};
use tollgate_issuer::PasswordHash;

/// An OAuth 2.0 token service whose JWT access tokens can be revoked.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the token service.
    Serve {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Publish revocations to (and follow) the Redis at this URL, as `[replication]
        /// redis_url` would (the file's other `[replication]` keys, or their defaults, apply).
        #[arg(long, value_name = "URL")]
        redis: Option<String>,
    },
    /// Runs the validating reverse proxy and forward-auth service (see docs/gateway.md).
    Gateway {
        /// The gateway's TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Publishes one revocation straight into the Redis stream that every follower reads: for
    /// tokens tollgate did not issue (Keycloak, Auth0, ...).
    ///
    /// Name the Redis (`--redis URL` or `--config FILE`) and exactly one of `--jti ID
    /// --expires-at TIME`, `--all`, `--tenant PATH`, `--subject SUB`, `--client ID`, `--session
    /// SID` (with `--before TIME`, default now; with `--issuer ISS`, only that issuer's tokens).
    /// TIME is RFC 3339 (`2026-11-22T10:00:00Z`) or Unix seconds.
    Revoke(revoke::Args),
    /// Copies an SQLite data directory (live tokens, refresh tokens, every revocation and
    /// cutoff) into the PostgreSQL store of a configuration with `store = "postgres"`.
    ///
    /// Stop the `tollgate serve` using the directory first. Refuses a database that already
    /// holds tokens or revocations unless `--force` (copying again merges: it is harmless).
    MigrateStore(migrate::Args),
    /// Prints the argon2id hash of a password (or client secret).
    ///
    /// At a terminal it asks twice, without echo; otherwise it reads standard input (one
    /// trailing newline is dropped), e.g. `printf %s "$SECRET" | tollgate hash-password`.
    HashPassword,
    /// Generates a signing key as a PKCS#8 DER file (owner-only permissions).
    Keygen {
        /// Where to write the key.
        #[arg(long, short)]
        out: PathBuf,
        /// The key id (`kid`).
        #[arg(long)]
        kid: String,
        /// EdDSA, ES256 or RS256.
        #[arg(long, default_value = "EdDSA")]
        algorithm: String,
    },
}

/// Parses the process's arguments, runs the command, and prints any failure as one line,
/// `tollgate: <what went wrong>`, on standard error.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let outcome = match cli.command {
        Command::Serve { config, redis } => serve::run(&config, redis.as_deref()),
        Command::Gateway { config } => tollgate_gateway::run(&config),
        Command::Revoke(args) => revoke::run(args),
        Command::MigrateStore(args) => migrate::run(args),
        Command::HashPassword => hash_password(),
        Command::Keygen {
            out,
            kid,
            algorithm,
        } => keygen(&out, &kid, &algorithm),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tollgate: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `--help` and `--version` as clap prints them (exit 0); no command at all, the help on
/// standard error with exit status 2, as for any other usage error; an argument error as one
/// line, `tollgate: <what is wrong>`, exit status 2 (clap's usage block would bury the one line
/// that matters, and scripts read the first line).
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{}", error.render());
            return ExitCode::from(2);
        }
        _ => {}
    }
    let text = error.render().to_string();
    let message = text
        .lines()
        .take_while(|line| !line.starts_with("Usage:"))
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("tip:"))
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    eprintln!("tollgate: {message} (see `tollgate --help`)");
    ExitCode::from(2)
}

fn hash_password() -> Result<(), String> {
    let password = if std::io::stdin().is_terminal() {
        let ask = |prompt: &str| {
            rpassword::prompt_password(prompt)
                .map_err(|e| format!("cannot read the password from the terminal: {e}"))
        };
        let first = ask("Password: ")?;
        if first.is_empty() {
            return Err("no password given".into());
        }
        if ask("Again: ")? != first {
            return Err("the two passwords differ; nothing was hashed".into());
        }
        first
    } else {
        let mut input = String::new();
        std::io::stdin()
            .take(4096)
            .read_to_string(&mut input)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        // One trailing newline is the terminal's, not the password's.
        let password = input
            .strip_suffix('\n')
            .map(|p| p.strip_suffix('\r').unwrap_or(p))
            .unwrap_or(&input);
        if password.is_empty() {
            return Err("no password on standard input".into());
        }
        password.to_owned()
    };
    let hash = PasswordHash::hash(password.as_bytes()).map_err(|e| e.to_string())?;
    println!("{}", hash.as_str());
    Ok(())
}

fn keygen(out: &std::path::Path, kid: &str, algorithm: &str) -> Result<(), String> {
    let algorithm: SigningAlgorithm = algorithm
        .parse()
        .ok()
        .filter(|a: &SigningAlgorithm| !a.is_symmetric())
        .ok_or("--algorithm must be EdDSA, ES256 or RS256")?;
    if out.exists() {
        return Err(format!(
            "{} exists; refusing to overwrite a key",
            out.display()
        ));
    }
    let key = SigningKey::generate(algorithm, kid).map_err(|e| e.to_string())?;
    setup::write_private(out, key.to_der())
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    // The configuration resolves relative paths from its own directory, not from here: print
    // the absolute path, as a TOML string (quotes and backslashes escaped).
    let file = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_owned());
    let quoted = |text: &str| toml::Value::String(text.to_owned()).to_string();
    println!(
        "[[keys]]\nkid = {}\nalgorithm = \"{algorithm}\"\nfile = {}\nsigning = true",
        quoted(kid),
        quoted(&file.to_string_lossy())
    );
    Ok(())
}
