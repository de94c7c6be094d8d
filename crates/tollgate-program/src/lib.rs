//! The plumbing every tollgate program shares, so that `tollgate serve` and `tollgate gateway`
//! behave alike:
//!
//! * [`config`]: reading a TOML configuration file with errors that are one line naming the
//!   file, the line, the column and the key (`prod.toml:14:10: clients[1].grants: ...`).
//! * [`connection`]: what one connection may cost before it has sent a request (the header read
//!   deadline hyper does not time, the connection count), and [`client_io`], the client's
//!   socket that holds its connection slot and times blocked writes.
//! * [`metrics`]: the gauges and counters the programs' collectors encode at scrape time.
//! * [`signals`]: the `[[shared_signals]]` tables, one Shared Signals receiver per transmitter.
//! * [`tls`]: TLS for listeners and for the connections the programs make.
//! * [`shutdown_signal`]: SIGTERM or SIGINT, installed before a server announces itself.

mod activity;
pub mod client_io;
pub mod config;
pub mod connection;
pub mod metrics;
pub mod signals;
mod stream;
pub mod tls;

/// Installs the SIGINT and SIGTERM handlers at once, and returns the future that resolves on the
/// first of them. Call it before the server announces itself: a signal that arrived before its
/// handler existed would end the process uncleanly.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).ok();
        let mut interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            tokio::select! {
                () = received(&mut terminate) => {}
                () = received(&mut interrupt) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The next delivery of `signal`; never, if its handler could not be installed.
#[cfg(unix)]
async fn received(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
