//! Starting and stopping the gateway: keys, the revocation feed, the Layer, the listeners (the
//! gateway's and the ops one), connection limits, and graceful shutdown.

use crate::config::{GatewayConfig, IssuerConfig, KeySource};
use crate::gateway::{Gateway, Shared};
use crate::limit::ClientRateLimit;
use crate::logout::LogoutEndpoint;
use crate::ops::metrics::{Metrics, Sources};
use crate::ops::{GatewayReadiness, Ops};
use crate::proxy::{PeerIp, Upstream};
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tollgate_core::{KeySet, RevocationIndex};
use tollgate_layer::{
    DefaultRejection, Issuer, Readiness, RemoteJwks, ValidateBearerLayer, Verifier,
};
use tollgate_program::connection::{
    Limits, Listener, serve_connections, serve_connections_sharing,
};
use tollgate_program::tls::TlsAcceptor;
use tollgate_redis::{Feed, Follower};

/// How often expired revocations, idle rate buckets and expired idle upstream connections are
/// forgotten.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// A running gateway: its addresses, and a way to stop it.
#[derive(Debug)]
pub struct RunningGateway {
    addr: SocketAddr,
    ops_addr: SocketAddr,
    index: Arc<RevocationIndex>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningGateway {
    /// Where requests are served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// The revocation index the gateway's Layer consults, which the `[revocations]` feed applies
    /// events to. A program that runs the gateway in process may apply events of its own (an
    /// event applied here is enforced from the next request on, by every worker).
    pub fn revocation_index(&self) -> &Arc<RevocationIndex> {
        &self.index
    }

    /// Stops accepting connections, lets in-flight requests finish (up to `[limits]
    /// drain_timeout`), then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the gateway: fetches each issuer's key source (a JWKS or discovery URL: the first
/// fetch runs in the background, `/readyz` says when they are done), connects to Redis (a Redis out of reach
/// is retried in the background; one refusing the credentials fails here), binds both
/// listeners, starts each Shared Signals receiver (its stream is set up in the background,
/// `/readyz` says when) and serves until [`RunningGateway::shutdown`].
///
/// Requests are served on `workers` threads of the gateway's own, each with a single-threaded
/// runtime and its own listening socket on the `listen` address; the revocation feed, key
/// refreshes and the ops listener run on the calling tokio runtime.
pub async fn start(config: GatewayConfig) -> Result<RunningGateway, String> {
    // Before anything listens: a bad or mismatched file is one line naming it.
    let tls = config
        .tls
        .clone()
        .map(TlsAcceptor::new)
        .transpose()
        .map_err(|e| format!("tls: {e}"))?;
    let index = Arc::new(RevocationIndex::new());
    let keys = issuer_keys(&config).await?;
    let verifier = verifier(&config, &index, &keys)?;
    let (feed, feed_health) = follow_revocations(&config, &index).await?;
    let mut layer = ValidateBearerLayer::new(verifier);
    if config.client_cert.require_bound_tokens {
        layer = layer.require_bound_tokens();
    }
    if let Some(health) = &feed_health {
        layer = layer.readiness(health.clone());
    }
    let logout = logout_endpoint(&config, &keys, &index)?;
    let shared_signals = crate::shared_signals::receivers(
        &config.shared_signals,
        &index,
        config.revocations.as_ref(),
    )?;
    let readiness = Arc::new(GatewayReadiness {
        keys: keys.iter().map(|k| k.keys.clone()).collect(),
        feed: feed_health,
        shared_signals: shared_signals.clone(),
    });
    let route_labels: Vec<String> = config.routes.iter().map(|r| r.prefix.clone()).collect();
    let upstream_names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
    let metrics = Arc::new(Metrics::new(
        &route_labels,
        &upstream_names,
        Sources {
            index: index.clone(),
            feed: feed.clone(),
            jwks: keys.iter().filter_map(|k| k.remote.clone()).collect(),
            ready: readiness.clone(),
            logout: logout.as_ref().map(LogoutEndpoint::stats),
            shared_signals: shared_signals.clone(),
            tls: tls.clone(),
        },
    ));
    let limits = config.limits;
    let workers = config.workers;
    let limiter = (limits.client_rate > 0.0).then(|| {
        Arc::new(ClientRateLimit::new(
            limits.client_rate,
            limits.client_burst,
        ))
    });
    let shared = Arc::new(Shared {
        routes: config.routes,
        forward_auth: config.forward_auth,
        logout,
        shared_signals: shared_signals.clone(),
        identity: config.identity,
        proxy: config.proxy,
        client_cert: config.client_cert,
        upstreams: config
            .upstreams
            .iter()
            .map(|u| Upstream::new(u, workers, &limits, tls.is_some()))
            .collect(),
        metrics: metrics.clone(),
        limiter: limiter.clone(),
        rejection: DefaultRejection::with_realm(&config.validation.realm),
    });
    let gateway = Gateway::new(shared.clone(), layer);
    let ops = Ops { metrics, readiness };

    let listeners = bind_workers(config.listen, workers)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let ops_listener = TcpListener::bind(config.ops_listen)
        .await
        .map_err(|e| format!("cannot listen on {} (ops): {e}", config.ops_listen))?;
    let addr = listeners
        .first()
        .ok_or("no listener")?
        .local_addr()
        .map_err(|e| e.to_string())?;
    let ops_addr = ops_listener.local_addr().map_err(|e| e.to_string())?;
    // Reloads the certificates on SIGHUP and when their files change; its SIGHUP handler is in
    // place before the gateway announces itself (a SIGHUP without one ends the process).
    let reload = tls.clone().map(tollgate_program::tls::reload::spawn);
    let issuers: Vec<&str> = config.issuers.iter().map(|i| i.issuer.as_str()).collect();
    tracing::info!(
        address = %addr,
        ops = %ops_addr,
        ?issuers,
        max_connections = limits.max_connections,
        tls = tls.is_some(),
        "tollgate gateway is serving"
    );

    let (stop, stopped) = watch::channel(false);
    let purge_index = tollgate_layer::spawn_index_purge(
        &index,
        Arc::new(tollgate_core::SystemClock),
        PURGE_EVERY,
    );
    let purge_idle = tokio::spawn(async move {
        let mut every = tokio::time::interval(PURGE_EVERY);
        loop {
            every.tick().await;
            if let Some(limiter) = &limiter {
                limiter.purge();
            }
            for upstream in &shared.upstreams {
                upstream.purge_idle();
            }
        }
    });
    // Started once the listeners are bound: a push transmitter may push the stream's
    // verification event to this gateway at once (it waits in the backlog for a worker).
    let signal_tasks = shared_signals.start()?;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let finished = spawn_workers(listeners, tls, &gateway, limits, &slots, &stopped)?;
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let ops_limits = Limits {
            max_connections: 64,
            ..conn_limits(&limits)
        };
        let ops_loop = serve_connections(
            ops_listener,
            http_builder(&limits),
            ops_limits,
            stopped,
            &graceful,
            move |_| {
                let ops = ops.clone();
                hyper::service::service_fn(move |request: Request<Incoming>| {
                    let response = ops.answer(&request);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                })
            },
        );
        ops_loop.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await;
        for finished in finished {
            let _ = finished.await;
        }
        // Kept until the requests are drained: a push answered during the drain may still need
        // its receiver's stream.
        drop(signal_tasks);
        purge_index.abort();
        purge_idle.abort();
        if let Some(reload) = reload {
            reload.abort();
        }
        if let Some(feed) = feed {
            feed.stop();
        }
        tracing::info!("bye");
    });
    Ok(RunningGateway {
        addr,
        ops_addr,
        index,
        stop,
        task,
    })
}

/// One issuer's verification keys: read from files, or a remote JWKS and its refresher.
struct IssuerKeys {
    keys: KeySet,
    remote: Option<RemoteJwks>,
}

/// Every issuer's keys, in the configuration's order: read from files, or a remote JWKS (from a
/// URL, or named by a discovery document, read here) whose first fetch runs in the background.
async fn issuer_keys(config: &GatewayConfig) -> Result<Vec<IssuerKeys>, String> {
    let mut all = Vec::with_capacity(config.issuers.len());
    for issuer in &config.issuers {
        all.push(keys(issuer).await?);
    }
    Ok(all)
}

async fn keys(issuer: &IssuerConfig) -> Result<IssuerKeys, String> {
    let key = &issuer.keys_key;
    let remote = match &issuer.keys {
        KeySource::Local(keys) => {
            return Ok(IssuerKeys {
                keys: keys.clone(),
                remote: None,
            });
        }
        KeySource::Jwks { uri, refresh } => RemoteJwks::builder(uri.clone())
            .refresh_interval(*refresh)
            .build()
            .map_err(|e| format!("{key}.jwks_url: {e}"))?,
        KeySource::Discovery { uri, refresh } => RemoteJwks::discover(uri.clone(), &issuer.issuer)
            .await
            .map_err(|e| format!("{key}.discovery_url: {e}"))?
            .refresh_interval(*refresh)
            .build()
            .map_err(|e| format!("{key}.discovery_url: {e}"))?,
    };
    Ok(IssuerKeys {
        keys: remote.keys().clone(),
        remote: Some(remote),
    })
}

/// The back-channel logout receiver, if `[back_channel_logout]` is set.
fn logout_endpoint(
    config: &GatewayConfig,
    keys: &[IssuerKeys],
    index: &Arc<RevocationIndex>,
) -> Result<Option<LogoutEndpoint>, String> {
    let Some(logout) = &config.back_channel_logout else {
        return Ok(None);
    };
    let keys: Vec<_> = keys
        .iter()
        .map(|k| (k.keys.clone(), k.remote.clone()))
        .collect();
    LogoutEndpoint::new(
        logout,
        &config.issuers,
        &keys,
        index,
        config.revocations.as_ref(),
    )
    .map(Some)
}

/// The `Verifier` of every issuer and `[validation]`, on `index`.
fn verifier(
    config: &GatewayConfig,
    index: &Arc<RevocationIndex>,
    keys: &[IssuerKeys],
) -> Result<Verifier, String> {
    let v = &config.validation;
    let mut builder = Verifier::builder()
        .leeway(v.leeway)
        .revocation_index(index.clone());
    for (issuer, keys) in config.issuers.iter().zip(keys) {
        builder = builder.add_issuer(trusted(issuer, keys));
    }
    if v.cache_verified_tokens > 0 {
        builder = builder.cache_verified_tokens(v.cache_verified_tokens);
    }
    builder.build().map_err(|e| e.to_string())
}

/// One configured issuer, as the Verifier takes it.
fn trusted(issuer: &IssuerConfig, keys: &IssuerKeys) -> Issuer {
    let mut trusted = Issuer::new(&issuer.issuer).require_at_jwt(issuer.require_at_jwt);
    for audience in &issuer.audiences {
        trusted = trusted.audience(audience);
    }
    if let Some(algorithms) = &issuer.algorithms {
        trusted = trusted.algorithms(algorithms.iter().copied());
    }
    match &keys.remote {
        Some(remote) => trusted.remote_jwks(remote.clone()),
        None => trusted.keys(keys.keys.clone()),
    }
}

/// The Redis feed of `[revocations]` and its health under the policy, or neither (and a warning
/// that revocation is not enforced).
async fn follow_revocations(
    config: &GatewayConfig,
    index: &Arc<RevocationIndex>,
) -> Result<(Option<Feed>, Option<Arc<dyn Readiness>>), String> {
    Ok(match &config.revocations {
        Some(r) => {
            let feed = Follower::new(r.target.clone(), index.clone())
                .keys(r.keys.clone())
                .on_unreadable(r.on_unreadable)
                .start()
                .await
                .map_err(|e| format!("revocations: {e}"))?;
            let health: Arc<dyn Readiness> = Arc::new(feed.health(r.policy));
            tracing::info!(redis = %r.target, policy = ?r.policy, on_unreadable = %r.on_unreadable, "following revocations through Redis");
            (Some(feed), Some(health))
        }
        None => {
            tracing::warn!(
                "no [revocations] table: revoked tokens are accepted until they expire \
                 (only the signature and claims are checked)"
            );
            (None, None)
        }
    })
}

/// Starts one request-serving thread per listener ([`worker`]); each says on its receiver when
/// its connections are drained.
fn spawn_workers(
    listeners: Vec<std::net::TcpListener>,
    tls: Option<TlsAcceptor>,
    gateway: &Gateway,
    limits: crate::config::Limits,
    slots: &Arc<Semaphore>,
    stopped: &watch::Receiver<bool>,
) -> Result<Vec<oneshot::Receiver<()>>, String> {
    let mut finished = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let (done, finished_one) = oneshot::channel::<()>();
        finished.push(finished_one);
        let gateway = gateway.clone();
        let slots = slots.clone();
        let stopped = stopped.clone();
        let tls = tls.clone();
        std::thread::Builder::new()
            .name(format!("tollgate-gateway-{i}"))
            .spawn(move || {
                worker(i, listener, tls, gateway, limits, slots, stopped);
                let _ = done.send(());
            })
            .map_err(|e| format!("cannot start a worker thread: {e}"))?;
    }
    Ok(finished)
}

/// `count` listening sockets on one address (`SO_REUSEPORT`: the kernel spreads new
/// connections over them). Port 0 picks a port for the first, and the others share it.
///
/// A port something already listens on is refused, as a plain bind would refuse it: without the
/// check, a second gateway started on the same port by the same user would silently join the
/// first one's group and take half its connections.
fn bind_workers(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        drop(std::net::TcpListener::bind(addr)?);
    }
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(1024)?;
        addr = listener.local_addr()?;
        listeners.push(listener.into_std()?);
    }
    Ok(listeners)
}

/// One request-serving thread: a single-threaded runtime that accepts on its own socket and
/// serves those connections to the end, with its own upstream connections, so that a request
/// never changes threads (nginx's worker model). Returns once its connections are drained.
fn worker(
    index: usize,
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    gateway: Gateway,
    limits: crate::config::Limits,
    slots: Arc<Semaphore>,
    stopped: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start a worker's runtime");
            return;
        }
    };
    crate::proxy::set_worker(index + 1);
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "cannot register a worker's listener");
                return;
            }
        };
        let graceful = GracefulShutdown::new();
        serve_connections_sharing(
            Listener::new(listener, tls),
            http_builder(&limits),
            conn_limits(&limits),
            slots,
            stopped,
            &graceful,
            move |peer| {
                let gateway = gateway.clone();
                let peer = PeerIp::new(peer);
                hyper::service::service_fn(move |request: Request<Incoming>| {
                    let gateway = gateway.clone();
                    let peer = peer.clone();
                    // The request's future is large (kilobytes: routing, the Layer, the upstream
                    // call); hyper moves the service's future into its dispatcher, so it gets a
                    // box and hyper moves a pointer.
                    Box::pin(async move {
                        Ok::<_, std::convert::Infallible>(gateway.handle(peer, request).await)
                    })
                })
            },
        )
        .await;
        if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(drain_timeout = ?limits.drain_timeout, "in-flight requests did not finish in time");
        }
    });
}

/// The connection limits `tollgate-program` applies.
fn conn_limits(limits: &crate::config::Limits) -> Limits {
    Limits {
        header_read_timeout: limits.header_read_timeout,
        max_connections: limits.max_connections,
        send_timeout: limits.send_timeout,
    }
}

/// HTTP/1.1 and h2c, with the header size bound and HTTP/2 keep-alive pings.
fn http_builder(limits: &crate::config::Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}
