//! `tollgate gateway`: a validating reverse proxy and forward-auth service that honours
//! revocations.
//!
//! The gateway is a program around tollgate's Layer, not a second validator: every protected
//! request goes through [`tollgate_layer::ValidateBearerLayer`] (the same `Verifier`, the same
//! rejections), whose revocation index is fed from Redis by [`tollgate_redis::Follower`] and
//! whose readiness is the feed's [`HealthPolicy`](tollgate_redis::HealthPolicy). What the gateway
//! adds is its own:
//!
//! * [`config`]: `gateway.toml` (one issuer, or several in `[[issuers]]`), with errors naming
//!   file, line and key;
//! * `route`: path-prefix (and method) routes, public or requiring scopes, roles, a tenant,
//!   issuers;
//! * `server`: `workers` request-serving threads, one runtime and one `SO_REUSEPORT` socket
//!   each, as nginx's worker processes;
//! * `proxy`: pooled HTTP/1.1 and h2c upstreams (a pool part per worker), streamed bodies,
//!   upgrades, 502/504;
//! * `forward_auth`: the endpoint nginx `auth_request`, Traefik `ForwardAuth` and Envoy
//!   `ext_authz` call;
//! * `logout` and `shared_signals`: identity providers' logouts and security events, received on
//!   the listener before any route (`[back_channel_logout]`, `[[shared_signals]]`);
//! * `limit`: the per-client-id rate cap;
//! * [`ops`]: `/healthz`, `/readyz`, `/metrics` on their own listener.
//!
//! The order of checks on a request, every answer the gateway makes itself, and every
//! configuration key are in `docs/gateway.md`.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), String> {
//! let config = tollgate_gateway::config::load("gateway.toml".as_ref()).map_err(|e| e.to_string())?;
//! let gateway = tollgate_gateway::start(config).await?;
//! println!("serving on {}", gateway.local_addr());
//! gateway.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod client_cert;
pub mod config;
mod forward_auth;
mod gateway;
mod headers;
mod identity;
pub mod limit;
mod logout;
pub mod ops;
mod proxy;
mod response;
mod route;
mod server;
mod shared_signals;

pub use config::{ConfigError, GatewayConfig, Limits};
pub use forward_auth::ForwardAuthProxy;
pub use response::GatewayBody;
pub use server::{RunningGateway, start};

/// `tollgate gateway --config <path>`: logs to standard error (`RUST_LOG`, default `info`),
/// loads the configuration, serves until SIGTERM or SIGINT, then drains in-flight requests.
///
/// Returns the one-line message of what stopped it from starting.
pub fn run(config_path: &std::path::Path) -> Result<(), String> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let config = config::load(config_path).map_err(|e| e.to_string())?;
    // Requests are served on the gateway's own worker threads (`workers`); this runtime keeps
    // the rest: the revocation feed, key refreshes, the ops listener.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let shutdown = tollgate_program::shutdown_signal();
        let gateway = start(config).await?;
        shutdown.await;
        gateway.shutdown().await;
        Ok(())
    })
}
