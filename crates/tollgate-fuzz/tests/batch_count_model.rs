//! Model test of the batch-revocation count, through the public `TokenService`: random histories
//! of `client_credentials` issuance, time passing (a `ManualClock`), single revocations
//! (`/connect/revocation`) and cutoffs applied to the shared index, then batch revocations
//! (`/api/v2/identity/token/batch-revocation`) with every narrowing. For each batch, the count it
//! answers must equal the number of issued tokens that a `Verifier` sharing the index (and clock,
//! leeway 0) accepted just before the call and refuses just after it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{CutoffScope, ManualClock, RevocationEvent, RevocationIndex, UnixMillis};
use tollgate_fuzz::fixture;
use tollgate_issuer::TokenService;
use tollgate_layer::Verifier;
use tower::ServiceExt;

/// The fixture's `client_credentials` clients and their secrets; `acme` lives in `/Acme/EU`, the
/// others in `/`.
const CLIENTS: &[(&str, &str)] = &[
    ("svc", "svc-secret"),
    ("gateway", "gateway-secret"),
    ("acme", "acme-secret"),
];

#[derive(Debug, Clone)]
enum Step {
    /// Client `CLIENTS[i]` gets a token with this lifetime (seconds; clamped by the service).
    Issue(usize, u64),
    /// The clock moves forward (ms).
    Advance(u64),
    /// The issuing client revokes the n-th token issued so far (modulo).
    Revoke(proptest::sample::Index),
    /// A cutoff reaches the shared index directly (another replica's event), `back` ms before now.
    Cutoff(CutoffScope, i64),
    /// A batch revocation: scope, and `creationBefore` as `back` ms before now (None: null).
    Batch(CutoffScope, Option<i64>),
}

fn scope() -> impl Strategy<Value = CutoffScope> {
    prop_oneof![
        Just(CutoffScope::All),
        proptest::sample::select(vec!["/", "/Acme", "/Acme/EU", "/Globex"])
            .prop_map(|t| CutoffScope::Tenant(t.into())),
        proptest::sample::select(CLIENTS.iter().map(|c| c.0).collect::<Vec<_>>())
            .prop_map(|c| CutoffScope::Subject(c.into())),
        proptest::sample::select(CLIENTS.iter().map(|c| c.0).collect::<Vec<_>>())
            .prop_map(|c| CutoffScope::Client(c.into())),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0..CLIENTS.len(), 1u64..20).prop_map(|(c, l)| Step::Issue(c, l)),
        3 => (0u64..4_000).prop_map(Step::Advance),
        2 => any::<proptest::sample::Index>().prop_map(Step::Revoke),
        1 => (scope(), 0i64..5_000).prop_map(|(s, b)| Step::Cutoff(s, b)),
        2 => (scope(), proptest::option::of(0i64..5_000)).prop_map(|(s, b)| Step::Batch(s, b)),
    ]
}

/// ISO 8601 (RFC 3339, UTC, milliseconds) for `ms` since the epoch (days to civil date: Howard
/// Hinnant's algorithm).
fn iso(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1_000 % 60,
        ms_of_day % 1_000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

struct World {
    service: TokenService,
    clock: Arc<ManualClock>,
    verifier: Verifier,
    /// (token, client index) of every token issued.
    issued: Vec<(String, usize)>,
}

async fn send(
    service: &TokenService,
    request: Request<Full<Bytes>>,
) -> (StatusCode, serde_json::Value) {
    let Ok(response) = service.clone().oneshot(request).await;
    let status = response.status();
    let Ok(body) = response.into_body().collect().await;
    let body = body.to_bytes();
    let json = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body).expect("JSON body")
    };
    (status, json)
}

fn form(path: &str, client: usize, body: String) -> Request<Full<Bytes>> {
    let (id, secret) = CLIENTS[client];
    Request::post(path)
        .header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

impl World {
    async fn new() -> World {
        let clock = fixture::clock();
        let index = Arc::new(RevocationIndex::new());
        let service = fixture::token_service_with_clock(index.clone(), clock.clone()).await;
        let verifier = Verifier::builder()
            .issuer(fixture::ISSUER)
            .audience(fixture::ISSUER)
            .keys(service.keys().clone())
            .revocation_index(index)
            .clock(clock.clone())
            .leeway(Duration::ZERO)
            .build()
            .unwrap();
        World {
            service,
            clock,
            verifier,
            issued: Vec::new(),
        }
    }

    fn now(&self) -> i64 {
        tollgate_core::Clock::now(&*self.clock).0
    }

    fn accepted(&self) -> Vec<bool> {
        self.issued
            .iter()
            .map(|(token, _)| self.verifier.verify(token).is_ok())
            .collect()
    }

    async fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match step {
            Step::Issue(client, lifetime) => {
                let mut body =
                    format!("grant_type=client_credentials&access-token-lifetime={lifetime}");
                if CLIENTS[*client].0 == "acme" {
                    // Its only tenant; see `client_credentials_default_to_the_clients_single_tenant`.
                    body.push_str("&tenant_path=%2FAcme%2FEU");
                }
                let (status, json) =
                    send(&self.service, form("/connect/token", *client, body)).await;
                prop_assert_eq!(status, StatusCode::OK, "{}", json);
                let token = json["access_token"].as_str().unwrap().to_owned();
                self.issued.push((token, *client));
            }
            Step::Advance(ms) => self.clock.advance(Duration::from_millis(*ms)),
            Step::Revoke(which) => {
                if self.issued.is_empty() {
                    return Ok(());
                }
                let (token, client) = which.get(&self.issued).clone();
                let request = form("/connect/revocation", client, format!("token={token}"));
                let (status, json) = send(&self.service, request).await;
                prop_assert_eq!(status, StatusCode::OK, "{}", json);
                prop_assert!(self.verifier.verify(&token).is_err());
            }
            Step::Cutoff(scope, back) => {
                self.service.index().apply(&RevocationEvent::Cutoff {
                    scope: scope.clone(),
                    issued_before: UnixMillis(self.now() - back),
                });
            }
            Step::Batch(scope, back) => {
                let mut body = serde_json::Map::new();
                body.insert(
                    "creationBefore".into(),
                    back.map(|b| iso(self.now() - b)).into(),
                );
                match scope {
                    CutoffScope::All => {}
                    CutoffScope::Tenant(t) => {
                        _ = body.insert("tenantPath".into(), t.clone().into())
                    }
                    CutoffScope::Subject(s) => _ = body.insert("subject".into(), s.clone().into()),
                    CutoffScope::Client(c) => _ = body.insert("clientId".into(), c.clone().into()),
                    other => panic!("the batch API has no field for {other:?}"),
                }
                let before = self.accepted();
                // Issued now: a cutoff at or before now leaves the admin's own token alone.
                let admin = fixture::admin_token_at(UnixMillis(self.now()));
                let request = Request::post("/api/v2/identity/token/batch-revocation")
                    .header("authorization", format!("Bearer {admin}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(
                        serde_json::Value::Object(body).to_string(),
                    )))
                    .unwrap();
                let (status, json) = send(&self.service, request).await;
                prop_assert_eq!(status, StatusCode::OK, "{}", json);
                let after = self.accepted();
                let flipped = before
                    .iter()
                    .zip(&after)
                    .filter(|(was, is)| **was && !**is)
                    .count() as u64;
                prop_assert!(
                    !before.iter().zip(&after).any(|(was, is)| !was && *is),
                    "a batch revocation revived a token"
                );
                prop_assert_eq!(
                    json["count"].as_u64(),
                    Some(flipped),
                    "{:?} (creationBefore {:?} ms back): count vs tokens refused since",
                    scope,
                    back
                );
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn batch_count_is_the_number_of_tokens_it_cut_off(
        steps in proptest::collection::vec(step(), 1..30),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut world = World::new().await;
            for step in &steps {
                world.step(step).await?;
            }
            // A last, global batch: every token still accepted is counted once.
            world.step(&Step::Batch(CutoffScope::All, None)).await
        })?;
    }
}

/// CONTRACT.md, `/connect/token`, `tenant_path` row: "Absent: [...] `client_credentials` → the
/// client's single tenant, else `/`". Found by the model test above: a client whose one tenant is
/// `/Acme/EU` gets `400 unauthorized_client` ("may not act in this tenant") when it names none.
/// ISSUER BUG, for the lead (crates/tollgate-issuer/src/token_endpoint.rs, `tenant`): un-ignore
/// when fixed.
#[test]
fn client_credentials_default_to_the_clients_single_tenant() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let world = World::new().await;
        let acme = CLIENTS.iter().position(|c| c.0 == "acme").unwrap();
        let request = form(
            "/connect/token",
            acme,
            "grant_type=client_credentials".into(),
        );
        let (status, json) = send(&world.service, request).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        let claims = world
            .verifier
            .verify(json["access_token"].as_str().unwrap())
            .unwrap();
        assert_eq!(claims.tenant(), "/Acme/EU");
    });
}

#[test]
fn iso_formats_known_instants() {
    assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso(fixture::NOW.0 + 1_234), "2026-01-01T00:00:01.234Z");
    assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
}
