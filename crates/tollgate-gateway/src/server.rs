//! Starting and stopping the gateway: keys, the revocation feed, the Layer, the listeners (the
//! gateway's and the ops one), connection limits, and graceful shutdown.

use crate::config::{GatewayConfig, KeySource};
use crate::gateway::{Gateway, GatewayReadiness, Shared};
use crate::limit::ClientRateLimit;
use crate::ops::Ops;
use crate::ops::metrics::{Metrics, Sources};
use crate::proxy::Upstream;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tollgate_core::RevocationIndex;
use tollgate_layer::{DefaultRejection, Readiness, RemoteJwks, ValidateBearerLayer, Verifier};
use tollgate_program::connection::{Limits, serve_connections};
use tollgate_redis::Follower;

/// How often expired revocations and idle rate buckets are forgotten.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// A running gateway: its addresses, and a way to stop it.
#[derive(Debug)]
pub struct RunningGateway {
    addr: SocketAddr,
    ops_addr: SocketAddr,
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

    /// Stops accepting connections, lets in-flight requests finish (up to `[limits]
    /// drain_timeout`), then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the gateway on the current tokio runtime: fetches the keys' source (a JWKS or
/// discovery URL: the first fetch runs in the background, `/readyz` says when it is done),
/// connects to Redis (a Redis out of reach is retried in the background; one refusing the
/// credentials fails here), binds both listeners and serves until [`RunningGateway::shutdown`].
pub async fn start(config: GatewayConfig) -> Result<RunningGateway, String> {
    let index = Arc::new(RevocationIndex::new());
    let (keys, jwks) = match &config.keys {
        KeySource::Local(keys) => (keys.clone(), None),
        KeySource::Jwks { uri, refresh } => {
            let jwks = RemoteJwks::builder(uri.clone())
                .refresh_interval(*refresh)
                .build()
                .map_err(|e| format!("keys.jwks_url: {e}"))?;
            (jwks.keys().clone(), Some(jwks))
        }
        KeySource::Discovery { uri, refresh } => {
            let jwks = RemoteJwks::discover(uri.clone(), &config.issuer)
                .await
                .map_err(|e| format!("keys.discovery_url: {e}"))?
                .refresh_interval(*refresh)
                .build()
                .map_err(|e| format!("keys.discovery_url: {e}"))?;
            (jwks.keys().clone(), Some(jwks))
        }
    };
    let v = &config.validation;
    let mut builder = Verifier::builder()
        .issuer(&config.issuer)
        .leeway(v.leeway)
        .require_at_jwt(v.require_at_jwt)
        .revocation_index(index.clone());
    for audience in &config.audiences {
        builder = builder.audience(audience);
    }
    if let Some(algorithms) = &v.algorithms {
        builder = builder.algorithms(algorithms.iter().copied());
    }
    builder = match &jwks {
        Some(jwks) => builder.remote_jwks(jwks.clone()),
        None => builder.keys(keys.clone()),
    };
    if v.cache_verified_tokens > 0 {
        builder = builder.cache_verified_tokens(v.cache_verified_tokens);
    }
    let verifier = builder.build().map_err(|e| e.to_string())?;

    let (feed, feed_health) = match &config.revocations {
        Some(r) => {
            let feed = Follower::new(r.target.clone(), index.clone())
                .keys(r.keys.clone())
                .start()
                .await
                .map_err(|e| format!("revocations: {e}"))?;
            let health: Arc<dyn Readiness> = Arc::new(feed.health(r.policy));
            tracing::info!(redis = %r.target, policy = ?r.policy, "following revocations through Redis");
            (Some(feed), Some(health))
        }
        None => {
            tracing::warn!(
                "no [revocations] table: revoked tokens are accepted until they expire \
                 (only the signature and claims are checked)"
            );
            (None, None)
        }
    };
    let mut layer = ValidateBearerLayer::new(verifier);
    if let Some(health) = &feed_health {
        layer = layer.readiness(health.clone());
    }
    let readiness = Arc::new(GatewayReadiness {
        keys: keys.clone(),
        feed: feed_health,
    });
    let route_labels: Vec<String> = config.routes.iter().map(|r| r.prefix.clone()).collect();
    let upstream_names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
    let metrics = Arc::new(Metrics::new(
        &route_labels,
        &upstream_names,
        Sources {
            index: index.clone(),
            feed: feed.clone(),
            jwks: jwks.clone(),
            ready: readiness.clone(),
        },
    ));
    let limits = config.limits;
    let limiter = (limits.client_rate > 0.0).then(|| {
        Arc::new(ClientRateLimit::new(
            limits.client_rate,
            limits.client_burst,
        ))
    });
    let shared = Arc::new(Shared {
        routes: config.routes,
        forward_auth: config.forward_auth,
        identity: config.identity,
        upstreams: config.upstreams.iter().map(Upstream::new).collect(),
        metrics: metrics.clone(),
        limiter: limiter.clone(),
        rejection: DefaultRejection::with_realm(&config.validation.realm),
    });
    let gateway = Gateway::new(shared, layer);
    let ops = Ops { metrics, readiness };

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let ops_listener = TcpListener::bind(config.ops_listen)
        .await
        .map_err(|e| format!("cannot listen on {} (ops): {e}", config.ops_listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let ops_addr = ops_listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(
        address = %addr,
        ops = %ops_addr,
        issuer = %config.issuer,
        max_connections = limits.max_connections,
        "tollgate gateway is serving"
    );

    let (stop, stopped) = watch::channel(false);
    let purge_index = tollgate_layer::spawn_index_purge(
        &index,
        Arc::new(tollgate_core::SystemClock),
        PURGE_EVERY,
    );
    let purge_limits = limiter.map(|limiter| {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(PURGE_EVERY);
            loop {
                every.tick().await;
                limiter.purge();
            }
        })
    });
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let gateway_loop = serve_connections(
            listener,
            http_builder(&limits),
            conn_limits(&limits),
            stopped.clone(),
            &graceful,
            move |peer| {
                let gateway = gateway.clone();
                hyper::service::service_fn(move |request: Request<Incoming>| {
                    let gateway = gateway.clone();
                    async move { Ok::<_, std::convert::Infallible>(gateway.handle(peer, request).await) }
                })
            },
        );
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
        tokio::join!(gateway_loop, ops_loop);
        tracing::info!("shutting down: finishing in-flight requests");
        if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(drain_timeout = ?limits.drain_timeout, "in-flight requests did not finish in time");
        }
        purge_index.abort();
        if let Some(p) = purge_limits {
            p.abort();
        }
        if let Some(feed) = feed {
            feed.stop();
        }
        tracing::info!("bye");
    });
    Ok(RunningGateway {
        addr,
        ops_addr,
        stop,
        task,
    })
}

/// The connection limits `tollgate-program` applies.
fn conn_limits(limits: &crate::config::Limits) -> Limits {
    Limits {
        header_read_timeout: limits.header_read_timeout,
        max_connections: limits.max_connections,
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
