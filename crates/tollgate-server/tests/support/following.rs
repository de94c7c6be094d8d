//! A resource server in the test process: a Layer whose revocation index is fed only through
//! Redis, with its issuer's keys from a JWKS URL (the token service's, or another provider's).

use super::Server;
use http::{Request, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_core::RevocationIndex;
use tollgate_layer::{RemoteJwks, ValidateBearerLayer, Verifier};
use tollgate_redis::{Feed, Follower, HealthPolicy, RedisTarget};
use tower::{Layer, ServiceExt};

/// The demo configuration's issuer, which is also its tokens' default audience.
pub const ISSUER: &str = "http://127.0.0.1:8080";
/// How long a revocation may take to reach a follower before the test fails: generous, since
/// the machine may be busy; the polls return as soon as it has.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A Layer in this process, fed only through Redis, with the server's keys from its JWKS.
pub struct FollowingApi {
    verifier: Verifier,
    feed: Feed,
}

impl FollowingApi {
    pub async fn start(redis_url: &str, server: &Server) -> FollowingApi {
        let jwks = server.url("/.well-known/jwks.json");
        Self::start_for(redis_url, ISSUER, ISSUER, &jwks).await
    }

    /// A Layer for the tokens of `issuer` addressed to `audience`, keys from `jwks_url`.
    pub async fn start_for(
        redis_url: &str,
        issuer: &str,
        audience: &str,
        jwks_url: &str,
    ) -> FollowingApi {
        let index = Arc::new(RevocationIndex::new());
        let feed = Follower::new(RedisTarget::new(redis_url).unwrap(), index.clone())
            .start()
            .await
            .expect("follow the stream");
        assert!(
            feed.wait_synced(DEADLINE).await,
            "the follower never synced"
        );
        let jwks = RemoteJwks::builder(jwks_url.parse().unwrap())
            .build()
            .unwrap();
        let verifier = Verifier::builder()
            .issuer(issuer)
            .audience(audience)
            .remote_jwks(jwks)
            .revocation_index(index)
            .build()
            .unwrap();
        FollowingApi { verifier, feed }
    }

    /// The status the Layer answers `token` with.
    pub async fn status(&self, token: &str) -> u16 {
        let layer = ValidateBearerLayer::new(self.verifier.clone())
            .readiness(Arc::new(self.feed.health(HealthPolicy::default())));
        let service = layer.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
        let request = Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        service.oneshot(request).await.unwrap().status().as_u16()
    }

    /// Waits until the Layer answers `token` with `want`.
    pub async fn wait_for(&self, token: &str, want: u16, what: &str) {
        let start = Instant::now();
        loop {
            let status = self.status(token).await;
            if status == want {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{what}: the following Layer still answers {status}, not {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
