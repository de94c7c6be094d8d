//! The command line: `tollgate serve`, `tollgate hash-password`, `tollgate keygen`.

use crate::{serve, setup};
use clap::{Parser, Subcommand};
use std::io::Read;
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
    },
    /// Reads a password (or client secret) from standard input and prints its argon2id hash.
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
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve { config } => serve::run(&config),
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

fn hash_password() -> Result<(), String> {
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
    println!(
        "[[keys]]\nkid = \"{kid}\"\nalgorithm = \"{algorithm}\"\nfile = \"{}\"\nsigning = true",
        out.display()
    );
    Ok(())
}
