//! The back-channel logout endpoint (`[back_channel_logout]`): identity providers POST their
//! logout tokens here; each becomes a cutoff of that issuer's tokens, published through Redis to
//! every follower (and applied here at once) before the provider gets its `200`. See
//! `docs/identity-providers.md`.

use crate::config::{BackChannelLogoutConfig, IssuerConfig, Revocations};
use crate::response::GatewayBody;
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;
use tollgate_core::{KeySet, RevocationIndex};
use tollgate_layer::RemoteJwks;
use tollgate_signals::redis::{RedisPublisher, RedisReplayGuard};
use tollgate_signals::{BackChannelLogout, LogoutIssuer, MemoryReplayGuard, SignalStats};
use tower_service::Service;

/// The receiver and the path it answers on.
#[derive(Debug, Clone)]
pub(crate) struct LogoutEndpoint {
    path: String,
    receiver: BackChannelLogout,
}

impl LogoutEndpoint {
    /// The receiver of `config`, verifying each issuer's logout tokens with that issuer's keys
    /// (`keys[i]` for `issuers[i]`), publishing through `revocations` when the gateway follows
    /// Redis, else to `index` only.
    pub(crate) fn new(
        config: &BackChannelLogoutConfig,
        issuers: &[IssuerConfig],
        keys: &[(KeySet, Option<RemoteJwks>)],
        index: &Arc<RevocationIndex>,
        revocations: Option<&Revocations>,
    ) -> Result<LogoutEndpoint, String> {
        let mut builder = BackChannelLogout::builder().max_age(config.max_age);
        for logout in &config.issuers {
            let (issuer, (keys, remote)) = issuers
                .get(logout.issuer)
                .zip(keys.get(logout.issuer))
                .ok_or("back_channel_logout: an issuer without keys")?;
            let mut accepted = match remote {
                Some(remote) => {
                    LogoutIssuer::remote(&issuer.issuer, &logout.client_id, remote.clone())
                }
                None => LogoutIssuer::new(&issuer.issuer, &logout.client_id, keys.clone()),
            }
            .revoke(logout.revoke);
            if let Some(algorithms) = &issuer.algorithms {
                accepted = accepted.algorithms(algorithms.iter().copied());
            }
            builder = builder.issuer(accepted);
        }
        builder = match revocations {
            Some(r) => builder
                .publisher(
                    RedisPublisher::new(r.target.clone(), r.keys.clone())
                        .apply_locally(index.clone()),
                )
                .replay_guard(RedisReplayGuard::new(r.target.clone(), &r.prefix)),
            None => {
                tracing::warn!(
                    "[back_channel_logout] without [revocations]: logouts reach this gateway's \
                     index only"
                );
                builder
                    .publisher(index.clone())
                    .replay_guard(MemoryReplayGuard::new())
            }
        };
        let receiver = builder.build().map_err(|e| e.to_string())?;
        Ok(LogoutEndpoint {
            path: config.path.clone(),
            receiver,
        })
    }

    /// Whether a request for `path` is a logout (the path is compared exactly).
    pub(crate) fn matches(&self, path: &str) -> bool {
        path == self.path
    }

    /// What the receiver has received, applied and refused.
    pub(crate) fn stats(&self) -> SignalStats {
        self.receiver.stats().clone()
    }

    /// Answers one logout request.
    pub(crate) async fn answer(&self, request: Request<Incoming>) -> Response<GatewayBody> {
        let mut receiver = self.receiver.clone();
        // Always ready, never fails: its refusals are responses.
        let response = match receiver.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        crate::response::from_full(response)
    }
}
