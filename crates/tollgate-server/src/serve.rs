//! `tollgate serve`: the hyper server, connection limits, structured logs, and graceful shutdown.

use crate::metrics::{self, Metrics};
use crate::replication::{self, Replicas};
use crate::signals::SignalReceivers;
use crate::{config, setup};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tollgate_issuer::{PeerAddr, ResponseBody, TokenService};
use tollgate_program::connection::Limits;
use tollgate_program::connection::{Listener, serve_connections};
use tollgate_program::shutdown_signal;
use tollgate_program::tls::TlsAcceptor;
use tollgate_signals::SsfTask;
use tower_layer::Layer;
use tower_service::Service;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);
/// How often expired state is purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Runs `tollgate serve --config <config_path> [--redis <url>]` until SIGINT or SIGTERM.
///
/// Everything is checked before anything is written: the configuration, the key files, the
/// listening address; then the data directory is created and locked.
pub fn run(config_path: &Path, redis: Option<&str>) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut config = config::load(config_path).map_err(|e| e.to_string())?;
    if let Some(url) = redis {
        config.replicate_through(url)?;
    }
    config.check_shared_signals_replicated()?;
    let keys = setup::read_keys(&config).map_err(|e| e.to_string())?;
    // Before anything listens: a bad or mismatched file is one line naming it.
    let tls = config
        .tls()
        .cloned()
        .map(TlsAcceptor::new)
        .transpose()
        .map_err(|e| format!("tls: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listen = config.listen;
        let limits = Limits {
            header_read_timeout: config.header_read_timeout(),
            max_connections: config.max_connections(),
            ..Limits::default()
        };
        let tcp = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let listener = Listener::new(tcp, tls.clone());
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
        let signal_configs = config.shared_signals.clone();
        let measured = exporter.as_ref().map(|(_, metrics)| metrics);
        let service = setup::build(config, keys, measured)
            .await
            .map_err(|e| e.to_string())?;
        let replicas = match &replication {
            Some(replication) => Some(replication::start(replication, &service).await?),
            None => None,
        };
        let receivers = crate::signals::receivers(&signal_configs, &service)?;
        let signals = Signals {
            tasks: receivers.start()?,
            receivers,
        };
        let Some((metrics_listener, mut metrics)) = exporter else {
            return serve(
                listener,
                service.clone(),
                service,
                limits,
                replicas,
                signals,
            )
            .await;
        };
        metrics.collect(metrics::status::LiveTokens(service.clone()));
        if let Some(replicas) = &replicas {
            metrics.collect(replicas.status());
        }
        if !signals.receivers.is_empty() {
            metrics.collect(metrics::status::SharedSignals(signals.receivers.clone()));
        }
        if let Some(tls) = &tls {
            metrics.collect(metrics::status::Tls(tls.clone()));
        }
        let counted = metrics.count_responses().layer(service.clone());
        let address = metrics_listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(address = %address, "metrics are served at /metrics");
        let exporter = tokio::spawn(metrics::serve(metrics_listener, Arc::new(metrics)));
        let outcome = serve(listener, service, counted, limits, replicas, signals).await;
        exporter.abort();
        outcome
    })
}

/// The running `[[shared_signals]]` receivers (none without the tables): their tasks run until
/// the connections are drained.
struct Signals {
    receivers: SignalReceivers,
    tasks: Vec<SsfTask>,
}

/// Serves `endpoint` (the token service, measured or not), and the receivers' push paths before
/// it, until a shutdown signal, then drains connections and flushes `service`'s store.
async fn serve<S>(
    listener: Listener,
    service: TokenService,
    endpoint: S,
    limits: Limits,
    replicas: Option<Replicas>,
    signals: Signals,
) -> Result<(), String>
where
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let tls = listener.tls().is_some();
    // Reloads the certificates on SIGHUP and when their files change.
    let reload = listener
        .tls()
        .cloned()
        .map(tollgate_program::tls::reload::spawn);
    let purge = service.spawn_purge(PURGE_EVERY);
    // Installed before the server announces itself: a signal that arrives before its handler
    // exists would end the process uncleanly, with nothing flushed.
    let shutdown = shutdown_signal();
    tracing::info!(
        address = %local,
        tls,
        issuer = %service.issuer(),
        max_connections = limits.max_connections,
        header_read_timeout = ?limits.header_read_timeout,
        "tollgate is serving"
    );

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_header_list_size(64 * 1024);
    let graceful = GracefulShutdown::new();
    let (stopping, stop) = watch::channel(false);
    let signalled = tokio::spawn(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    // Each request carries the address it came from: failed client authentications are then
    // throttled per client id and address, so a guesser cannot lock out a client calling from
    // elsewhere.
    let receivers = signals.receivers.clone();
    serve_connections(listener, builder, limits, stop, &graceful, |peer| {
        let tokens = endpoint.clone();
        let receivers = receivers.clone();
        let peer_addr = PeerAddr(peer.ip());
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(peer_addr);
            let push = receivers.push_endpoint(request.uri().path()).cloned();
            let mut tokens = tokens.clone();
            // Always ready: the token service is, the counting layer only forwards, and a push
            // endpoint answers its refusals.
            async move {
                match push {
                    Some(mut push) => push.call(request).await,
                    None => tokens.call(request).await,
                }
            }
        })
    })
    .await;
    let _ = signalled.await;
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {DRAIN:?}");
    }
    purge.abort();
    if let Some(reload) = reload {
        reload.abort();
    }
    // After the drain: a push answered meanwhile may still need its receiver's stream.
    drop(signals.tasks);
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
