//! Reloading a listener's certificates without dropping a connection: on SIGHUP, and when the
//! contents of one of its files change (they are read every second, which costs a few kilobytes
//! of reading and spares a file-watching dependency; it also sees a file replaced by a rename,
//! as certbot and Kubernetes secrets do).
//!
//! A reload that fails (a file half written, a key that does not match its certificate) logs one
//! line naming the file and keeps the previous certificates; the next change is tried again.

use super::acceptor::TlsAcceptor;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often the files are read for changes.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Starts reloading `acceptor` on SIGHUP and on file changes, on the current tokio runtime,
/// until the returned task is aborted. The SIGHUP handler is installed before this returns (a
/// SIGHUP would otherwise end the process).
pub fn spawn(acceptor: TlsAcceptor) -> JoinHandle<()> {
    let mut hangup = hangup();
    let mut seen = fingerprint(&acceptor);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(POLL_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let trigger = tokio::select! {
                () = received(&mut hangup) => "SIGHUP",
                _ = every.tick() => {
                    let now = read_fingerprint(&acceptor).await;
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    "a file changed"
                }
            };
            // The reads are small and local, but they are blocking: off the runtime's thread.
            let reloading = acceptor.clone();
            let outcome = tokio::task::spawn_blocking(move || reloading.reload()).await;
            match outcome {
                Ok(Ok(())) => tracing::info!(trigger, "TLS certificates reloaded"),
                Ok(Err(e)) => tracing::warn!(
                    trigger,
                    "TLS reload failed, still serving the previous certificates: {e}"
                ),
                Err(e) => tracing::warn!(trigger, "TLS reload failed: {e}"),
            }
            if trigger == "SIGHUP" {
                // What was just loaded is the new baseline for the change check.
                seen = read_fingerprint(&acceptor).await;
            }
        }
    })
}

/// [`fingerprint`], read off the runtime's threads (the reads are small and local, but blocking).
async fn read_fingerprint(acceptor: &TlsAcceptor) -> Vec<Option<u64>> {
    let reading = acceptor.clone();
    tokio::task::spawn_blocking(move || fingerprint(&reading))
        .await
        .unwrap_or_default()
}

/// A digest of every file's contents (`None` for one that cannot be read). Not a secret: a
/// `DefaultHasher` only tells "changed" from "same".
fn fingerprint(acceptor: &TlsAcceptor) -> Vec<Option<u64>> {
    acceptor
        .settings()
        .files()
        .into_iter()
        .map(digest)
        .collect()
}

fn digest(path: &Path) -> Option<u64> {
    let contents = std::fs::read(path).ok()?;
    let mut hasher = DefaultHasher::new();
    contents.hash(&mut hasher);
    Some(hasher.finish())
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup() -> Hangup {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!("cannot handle SIGHUP, TLS files are reloaded on change only: {e}");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup() -> Hangup {}

#[cfg(unix)]
async fn received(hangup: &mut Hangup) {
    crate::received(hangup).await;
}

#[cfg(not(unix))]
async fn received(_: &mut Hangup) {
    std::future::pending::<()>().await;
}
