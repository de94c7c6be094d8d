//! `tollgate serve`: the hyper server, connection limits, structured logs, and graceful shutdown.

use crate::connection::{Limits, first_bytes};
use crate::metrics::{self, Metrics};
use crate::replication::{self, Replicas};
use crate::{config, setup};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tollgate_issuer::{PeerAddr, ResponseBody, TokenService};
use tower_layer::Layer;
use tower_service::Service;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);
/// How often expired state is purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Runs `tollgate serve --config <config_path>` until SIGINT or SIGTERM.
///
/// Everything is checked before anything is written: the configuration, the key files, the
/// listening address; then the data directory is created and locked.
pub fn run(config_path: &Path) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = config::load(config_path).map_err(|e| e.to_string())?;
    let keys = setup::read_keys(&config).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listen = config.listen;
        let limits = Limits {
            header_read_timeout: config.header_read_timeout(),
            max_connections: config.max_connections(),
        };
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let exporter = match config.metrics_listen() {
            Some(address) => Some((
                TcpListener::bind(address)
                    .await
                    .map_err(|e| format!("cannot listen on {address} for metrics: {e}"))?,
                Metrics::new(),
            )),
            None => None,
        };
        let replication = config.replication.clone();
        let measured = exporter.as_ref().map(|(_, metrics)| metrics);
        let service = setup::build(config, keys, measured)
            .await
            .map_err(|e| e.to_string())?;
        let replicas = match &replication {
            Some(replication) => Some(replication::start(replication, &service).await?),
            None => None,
        };
        let Some((metrics_listener, mut metrics)) = exporter else {
            return serve(listener, service.clone(), service, limits, replicas).await;
        };
        metrics.collect(metrics::status::LiveTokens(service.clone()));
        if let Some(replicas) = &replicas {
            metrics.collect(replicas.status());
        }
        let counted = metrics.count_responses().layer(service.clone());
        let address = metrics_listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(address = %address, "metrics are served at /metrics");
        let exporter = tokio::spawn(metrics::serve(metrics_listener, Arc::new(metrics)));
        let outcome = serve(listener, service, counted, limits, replicas).await;
        exporter.abort();
        outcome
    })
}

/// Serves `endpoint` (the token service, measured or not) until a shutdown signal, then drains
/// connections and flushes `service`'s store.
async fn serve<S>(
    listener: TcpListener,
    service: TokenService,
    endpoint: S,
    limits: Limits,
    replicas: Option<Replicas>,
) -> Result<(), String>
where
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let purge = service.spawn_purge(PURGE_EVERY);
    let mut shutdown = std::pin::pin!(shutdown_signal());
    tracing::info!(
        address = %local,
        issuer = %service.issuer(),
        max_connections = limits.max_connections,
        header_read_timeout = ?limits.header_read_timeout,
        "tollgate is serving"
    );

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_header_list_size(64 * 1024);
    let graceful = GracefulShutdown::new();
    let (stopping, stop) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut warned_full: Option<Instant> = None;
    loop {
        // A free slot first: at the bound, new connections wait in the kernel's backlog and are
        // served as soon as a connection ends.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if warned_full.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections wait"
                    );
                    warned_full = Some(Instant::now());
                }
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let deadline = Instant::now() + limits.header_read_timeout;
        let builder = builder.clone();
        // Each request carries the address it came from: failed client authentications are then
        // throttled per client id and address, so a guesser cannot lock out a client calling
        // from elsewhere.
        let tokens = endpoint.clone();
        let peer_addr = PeerAddr(peer.ip());
        let requested = Arc::new(AtomicBool::new(false));
        let seen = requested.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            seen.store(true, Ordering::Relaxed);
            request.extensions_mut().insert(peer_addr);
            // Always ready: the token service is, and the counting layer only forwards.
            tokens.clone().call(request)
        });
        let watcher = graceful.watcher();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let ready = tokio::select! {
                ready = first_bytes(&stream, deadline) => ready,
                _ = stop.changed() => false,
            };
            if !ready {
                tracing::debug!(%peer, "closed: no request within the header read timeout");
                return;
            }
            let mut builder = builder;
            // hyper's own timer starts now: give it what is left of the deadline.
            builder.http1().header_read_timeout(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            );
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let mut connection = std::pin::pin!(watcher.watch(connection));
            // hyper times HTTP/1 request heads, not HTTP/2 ones: an HTTP/2 connection that has
            // sent its preface but no request by the deadline is dropped here, which closes it.
            let outcome = match tokio::time::timeout_at(deadline, &mut connection).await {
                Ok(outcome) => outcome,
                Err(_) if requested.load(Ordering::Relaxed) => connection.await,
                Err(_) => {
                    tracing::debug!(%peer, "closed: no request within the header read timeout");
                    return;
                }
            };
            if let Err(e) = outcome {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {DRAIN:?}");
    }
    purge.abort();
    let flushed = service
        .flush()
        .await
        .map_err(|e| format!("cannot flush the store: {e}"));
    // After the flush: what the relay had not published is in the outbox, for the next start.
    if let Some(replicas) = replicas {
        replicas.stop();
    }
    flushed?;
    tracing::info!("store flushed; bye");
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers at once, and returns the future that resolves on the
/// first of them. Installed before the server announces itself: a signal that arrived before its
/// handler existed would end the process uncleanly, with nothing flushed.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
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
