//! The fixture of the Layer's tests: a key set, an index, a verifier and a token minter.
//!
//! Also compiled into the workspace's end-to-end tests (`tests/stacks.rs`, `tests/remote_keys.rs`)
//! through `#[path]`, so there is one fixture, here, beside the contract suite that uses most of it.
// Each test crate that includes the fixture uses only part of it.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tollgate_core::{KeySet, RevocationIndex, SigningAlgorithm, SigningKey, jws};
use tollgate_layer::Verifier;

pub(crate) const ISSUER: &str = "https://id.test";
pub(crate) const AUDIENCE: &str = "orders-api";

pub(crate) struct Fixture {
    pub(crate) keys: KeySet,
    pub(crate) index: Arc<RevocationIndex>,
    pub(crate) verifier: Verifier,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

impl Fixture {
    pub(crate) fn new(alg: SigningAlgorithm) -> Self {
        Self::with(alg, |b| b)
    }

    pub(crate) fn with(
        alg: SigningAlgorithm,
        configure: impl FnOnce(tollgate_layer::VerifierBuilder) -> tollgate_layer::VerifierBuilder,
    ) -> Self {
        let keys = KeySet::generate(alg, "k1").unwrap();
        let index = Arc::new(RevocationIndex::new());
        let builder = Verifier::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .keys(keys.clone())
            .revocation_index(index.clone());
        let verifier = configure(builder).build().unwrap();
        Fixture {
            keys,
            index,
            verifier,
        }
    }

    /// Standard claims for a token issued now; `edit` adjusts them.
    pub(crate) fn claims(&self, edit: impl FnOnce(&mut Value)) -> Value {
        let now = now_ms();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut claims = json!({
            "iss": ISSUER,
            "sub": "alice",
            "aud": AUDIENCE,
            "exp": now / 1000 + 300,
            "iat": now / 1000,
            "iat_ms": now,
            "jti": format!("jti-{n}-{now}"),
            "client_id": "web",
            "scope": "orders:read profile",
            "tenant": "/Org/Sub",
            "roles": ["user"],
            "grant_id": format!("grant-{n}"),
        });
        edit(&mut claims);
        claims
    }

    pub(crate) fn mint(&self, edit: impl FnOnce(&mut Value)) -> String {
        let claims = self.claims(edit);
        let key = self.keys.signing_key().unwrap();
        jws::encode(&key, jws::ACCESS_TOKEN_TYP, &claims).unwrap()
    }

    pub(crate) fn mint_with_key(&self, key: &SigningKey, typ: &str, claims: &Value) -> String {
        jws::encode(key, typ, claims).unwrap()
    }
}
