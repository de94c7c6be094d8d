//! [`TlsAcceptor`]: the TLS side of a listener. It holds the live rustls configuration, which a
//! reload swaps (handshakes under way finish with the configuration they started with; open
//! connections are not touched), and counts what operators watch: failed handshakes, reloads.

use super::pem::PemFileError;
use super::server::{Live, ServerTls};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

/// Accepts TLS connections with the certificates of a [`ServerTls`], reloadable. Cheap to clone:
/// clones share the configuration and the counters (one per listener, shared by its workers).
#[derive(Clone)]
pub struct TlsAcceptor {
    shared: Arc<Shared>,
}

struct Shared {
    settings: ServerTls,
    config: ArcSwap<Live>,
    handshake_failures: AtomicU64,
    reloads: AtomicU64,
    failed_reloads: AtomicU64,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

/// What a [`TlsAcceptor`] has counted since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlsStats {
    /// Handshakes that failed (a refused or missing client certificate, a client that does
    /// not speak TLS or shares no protocol version or cipher suite, a connection closed
    /// or timed out during the handshake).
    pub handshake_failures: u64,
    /// Reloads that swapped the certificates in.
    pub reloads: u64,
    /// Reloads refused (a bad or mismatched file): the previous certificates stayed.
    pub failed_reloads: u64,
}

impl TlsAcceptor {
    /// Reads the files of `settings`. Each error is one line naming the file at fault: a program
    /// reports it and exits before anything listens.
    pub fn new(settings: ServerTls) -> Result<Self, PemFileError> {
        let config = Arc::new(settings.load_live()?);
        Ok(TlsAcceptor {
            shared: Arc::new(Shared {
                settings,
                config: ArcSwap::new(config),
                handshake_failures: AtomicU64::new(0),
                reloads: AtomicU64::new(0),
                failed_reloads: AtomicU64::new(0),
            }),
        })
    }

    /// The settings the files come from.
    pub fn settings(&self) -> &ServerTls {
        &self.shared.settings
    }

    /// Reads the files again: new handshakes get the new certificates, open connections keep
    /// theirs. On an error (one line naming the file) the previous certificates stay in use.
    pub fn reload(&self) -> Result<(), PemFileError> {
        match self.shared.settings.load_live() {
            Ok(config) => {
                self.shared.config.store(Arc::new(config));
                self.shared.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.shared.failed_reloads.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> TlsStats {
        TlsStats {
            handshake_failures: self.shared.handshake_failures.load(Ordering::Relaxed),
            reloads: self.shared.reloads.load(Ordering::Relaxed),
            failed_reloads: self.shared.failed_reloads.load(Ordering::Relaxed),
        }
    }

    /// Runs the server side of the handshake on `io` with the current certificates, and says
    /// whether the client's certificate, if any, was verified against `client_ca` (rather than
    /// accepted as self-signed). The caller times it; a failure is counted.
    pub(crate) async fn accept<IO>(&self, io: IO) -> std::io::Result<(TlsStream<IO>, bool)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let live = self.shared.config.load_full();
        let acceptor = tokio_rustls::TlsAcceptor::from(live.config.clone());
        match acceptor.accept(io).await {
            Ok(tls) => {
                let by_ca = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|chain| live.verified_by_ca(chain));
                Ok((tls, by_ca))
            }
            Err(e) => {
                self.handshake_failed();
                Err(e)
            }
        }
    }

    /// Counts a handshake that did not complete (the caller gave up waiting for it).
    pub(crate) fn handshake_failed(&self) {
        self.shared
            .handshake_failures
            .fetch_add(1, Ordering::Relaxed);
    }
}
