//! The fixed world every target runs in: one Ed25519 key derived from a constant seed, a clock
//! standing still, an issuer, clients and users. Fixed so that committed seeds (tokens signed with
//! this key, valid at this instant) keep their meaning across runs and machines.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tollgate_core::{
    CutoffScope, KeySet, ManualClock, RevocationEvent, RevocationIndex, SigningAlgorithm,
    SigningKey, TenantPath, UnixMillis,
};
use tollgate_issuer::{
    Client, ClientSecret, GrantType, MemoryStore, PasswordHash, StaticDirectory, TokenService, User,
};
use tollgate_layer::Verifier;

/// `iss` of every token the fixture signs or issues.
pub const ISSUER: &str = "https://id.fuzz.invalid";
/// The audience the fixture's verifier accepts (the token service's default audience is
/// [`ISSUER`]; the verifier accepts both).
pub const AUDIENCE: &str = "fuzz-api";
/// The `kid` of the fixture key.
pub const KID: &str = "fuzz-k1";
/// Where the clock stands: 2026-01-01T00:00:00Z.
pub const NOW: UnixMillis = UnixMillis(1_767_225_600_000);
/// The verifier's clock-skew leeway, seconds.
pub const LEEWAY_SECS: i64 = 30;
/// A `jti` the fixture index holds as revoked.
pub const REVOKED_JTI: &str = "revoked-jti";
/// A grant the fixture index holds as revoked.
pub const REVOKED_GRANT: &str = "revoked-grant";
/// A tenant cut off at [`NOW`] minus one hour in the fixture index.
pub const CUT_TENANT: &str = "/Cut";

/// The Ed25519 signing key, from a constant 32-byte seed (PKCS#8 v1 DER).
pub fn signing_key() -> SigningKey {
    const PKCS8_V1_ED25519_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PKCS8_V1_ED25519_PREFIX.to_vec();
    der.extend_from_slice(&[0x5a; 32]);
    SigningKey::from_der(SigningAlgorithm::EdDSA, KID, &der).expect("the fixture key is valid")
}

/// A key set holding [`signing_key`], shared by every call (cloning shares it).
pub fn keys() -> KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let keys = KeySet::new();
        keys.set_signing_key(signing_key());
        keys
    })
    .clone()
}

/// A clock standing at [`NOW`].
pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(NOW))
}

/// A revocation index holding a revoked token ([`REVOKED_JTI`]), a revoked grant
/// ([`REVOKED_GRANT`]) and a cutoff of [`CUT_TENANT`] one hour before [`NOW`].
pub fn index() -> Arc<RevocationIndex> {
    let index = RevocationIndex::new();
    let far = UnixMillis(NOW.0 + 365 * 24 * 3_600_000);
    index.apply(&RevocationEvent::Token {
        jti: REVOKED_JTI.into(),
        expires_at: far,
    });
    index.apply(&RevocationEvent::Grant {
        grant_id: REVOKED_GRANT.into(),
        expires_at: far,
    });
    index.apply(&RevocationEvent::Cutoff {
        scope: CutoffScope::Tenant(CUT_TENANT.into()),
        issued_before: UnixMillis(NOW.0 - 3_600_000),
    });
    Arc::new(index)
}

/// A verifier of the fixture's tokens: issuer [`ISSUER`], audiences [`AUDIENCE`] and [`ISSUER`],
/// clock at [`NOW`], leeway [`LEEWAY_SECS`]; `cache` turns the verified-token cache on.
pub fn verifier(index: Arc<RevocationIndex>, cache: bool) -> Verifier {
    let mut builder = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .audience(ISSUER)
        .keys(keys())
        .revocation_index(index)
        .clock(clock())
        .leeway(Duration::from_secs(LEEWAY_SECS as u64));
    if cache {
        builder = builder.cache_verified_tokens(64);
    }
    builder.build().expect("the fixture verifier is complete")
}

/// The default JWS header of the fixture's tokens.
pub fn default_header() -> String {
    format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{KID}"}}"#)
}

/// Signs raw header and payload bytes (whatever they hold) with the fixture key into a compact
/// JWS, so that the verifier gets past the signature check and reaches the claims.
pub fn sign_raw(header: &[u8], payload: &[u8]) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = signing_key()
        .sign(token.as_bytes())
        .expect("Ed25519 signing does not fail");
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    token
}

/// Claims of a valid access token of the fixture issuer, issued a minute before [`NOW`] and
/// valid for a year, as JSON: `sub`, `client_id`, `tenant`, `roles`, `scope` as given.
pub fn claims_json(
    sub: &str,
    client_id: &str,
    tenant: &str,
    roles: &[&str],
    scope: &str,
) -> String {
    let iat_ms = NOW.0 - 60_000;
    serde_json::json!({
        "iss": ISSUER,
        "sub": sub,
        "aud": ISSUER,
        "exp": NOW.0 / 1000 + 365 * 24 * 3600,
        "iat": iat_ms / 1000,
        "iat_ms": iat_ms,
        "jti": format!("seed-{sub}-{client_id}"),
        "client_id": client_id,
        "scope": scope,
        "tenant": tenant,
        "roles": roles,
    })
    .to_string()
}

/// An admin access token (role `admin`, tenant `/`) issued at `issued_at` (ms) and valid for a
/// year from it.
pub fn admin_token_at(issued_at: UnixMillis) -> String {
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": "admin-sub",
        "aud": ISSUER,
        "exp": issued_at.as_secs() + 365 * 24 * 3600,
        "iat": issued_at.as_secs(),
        "iat_ms": issued_at.0,
        "jti": format!("admin-{}", issued_at.0),
        "client_id": "web",
        "tenant": "/",
        "roles": ["admin"],
        "scope": "openid",
    });
    sign_raw(default_header().as_bytes(), claims.to_string().as_bytes())
}

/// A valid admin access token (role `admin`, tenant `/`), as the batch-revocation seeds carry.
pub fn admin_token() -> String {
    sign_raw(
        default_header().as_bytes(),
        claims_json("admin-sub", "web", "/", &["admin"], "openid profile").as_bytes(),
    )
}

/// A valid access token of user `alice` (tenant `/Acme`, scopes `openid profile`).
pub fn user_token() -> String {
    sign_raw(
        default_header().as_bytes(),
        claims_json("user-0001", "web", "/Acme", &["customer"], "openid profile").as_bytes(),
    )
}

/// The clients: `svc` (client_credentials, secret `svc-secret`), `web` (password and
/// refresh_token, secret `web-secret`), `gateway` (client_credentials, may introspect any token,
/// secret `gateway-secret`), `acme` (client_credentials in tenant `/Acme/EU`, secret
/// `acme-secret`). Secrets are given in clear (only their SHA-256 is kept) so that client
/// authentication costs no argon2 run inside the fuzz loop.
fn clients() -> Vec<Client> {
    let client = |id: &str, secret: &str, grants: Vec<GrantType>, scopes: &[&str]| {
        Client::new(id, ClientSecret::from_plaintext(secret))
            .with_grants(grants)
            .with_scopes(scopes.iter().copied())
    };
    let mut svc = client(
        "svc",
        "svc-secret",
        vec![GrantType::ClientCredentials],
        &["api", "orders:read"],
    );
    svc.roles = vec!["service".into()];
    svc.max_access_token_lifetime = Some(Duration::from_secs(600));
    let web = client(
        "web",
        "web-secret",
        vec![GrantType::Password, GrantType::RefreshToken],
        &["openid", "profile", "orders:read"],
    );
    let mut gateway = client(
        "gateway",
        "gateway-secret",
        vec![GrantType::ClientCredentials],
        &[],
    );
    gateway.introspect_any = true;
    let mut acme = client(
        "acme",
        "acme-secret",
        vec![GrantType::ClientCredentials],
        &["api"],
    );
    acme.tenants = vec![TenantPath::parse("/Acme/EU").expect("fixture tenant")];
    vec![svc, web, gateway, acme]
}

/// argon2id at its minimum cost (8 KiB, one pass), computed once per password: password sign-ins
/// of known users stay cheap in the fuzz loop (unknown users still pay the service's dummy hash).
fn cheap_hash(password: &str) -> PasswordHash {
    let params = Params::new(8, 1, 1, None).expect("valid argon2 parameters");
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::from_b64("Zml4ZWQtZnV6ei1zYWx0").expect("valid salt");
    let phc = argon2
        .hash_password(password.as_bytes(), &salt)
        .expect("hashing a short password does not fail")
        .to_string();
    PasswordHash::parse(&phc).expect("argon2 PHC string")
}

fn users() -> Vec<User> {
    static HASHES: OnceLock<[PasswordHash; 3]> = OnceLock::new();
    let [alice_hash, admin_hash, bob_hash] = HASHES
        .get_or_init(|| {
            [
                cheap_hash("alice-password"),
                cheap_hash("admin-password"),
                cheap_hash("bob-password"),
            ]
        })
        .clone();
    let tenant = |t: &str| TenantPath::parse(t).expect("fixture tenant");
    let mut profile = serde_json::Map::new();
    profile.insert("name".into(), "Alice Example".into());
    profile.insert("email".into(), "alice@example.com".into());
    vec![
        User::new("alice", "user-0001", alice_hash)
            .with_tenants([tenant("/Acme")])
            .with_roles(["customer"])
            .with_profile(profile),
        User::new("admin", "admin-sub", admin_hash)
            .with_tenants([TenantPath::root()])
            .with_roles(["admin"]),
        User::new("bob", "user-0002", bob_hash)
            .with_tenants([tenant("/Acme"), tenant("/Globex")])
            .with_scopes(["openid"]),
    ]
}

/// A fresh token service over an empty [`MemoryStore`], with the fixture's keys, clock, clients
/// and users, one hashing thread, and `index` as its revocation index.
pub async fn token_service(index: Arc<RevocationIndex>) -> TokenService {
    token_service_with_clock(index, clock()).await
}

/// [`token_service`] with the caller's clock, to move time between requests.
pub async fn token_service_with_clock(
    index: Arc<RevocationIndex>,
    clock: Arc<ManualClock>,
) -> TokenService {
    let directory = Arc::new(StaticDirectory::new(clients(), users()).expect("no duplicates"));
    TokenService::builder()
        .issuer(ISSUER)
        .keys(keys())
        .revocation_index(index)
        .store(Arc::new(MemoryStore::new()))
        .clients(directory.clone())
        .users(directory)
        .clock(clock)
        .password_hash_concurrency(1)
        .build()
        .await
        .expect("the fixture service builds")
}

/// The current-thread runtime every target drives its futures on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime")
    })
}
