//! The bodies of tollgate's coverage-guided fuzz targets, one function per target.
//!
//! Each function takes the fuzzer's raw bytes, feeds them to one parser that sees untrusted input
//! through its **public** API, and panics when an invariant breaks (a panic is what libFuzzer
//! reports as a crash). The same functions serve twice:
//!
//! * `fuzz/fuzz_targets/<target>.rs` are one-liners calling them under `cargo fuzz` (nightly
//!   sanitizer flags; run with `fuzz/run.sh`);
//! * this crate's `tests/corpora.rs` replays every committed file of `fuzz/corpus/<target>/`
//!   through them as an ordinary test, so `cargo test --workspace` (CI) checks the corpora on
//!   stable.
//!
//! | target | what it feeds | invariants |
//! |---|---|---|
//! | [`bearer()`] | `Authorization` header bytes to a [`ValidateBearer`](tollgate_layer::ValidateBearer) service and tokens to [`Verifier::verify`](tollgate_layer::Verifier::verify) | status 200/400/401 only; accepted ⇔ verified; an accepted token is canonical and passes every claim check; cached and uncached verification agree |
//! | [`signed_claims()`] | a JWS header and claims JSON, **signed** with the fixture key | an accepted token's claims pass every check the Layer documents and the revocation index |
//! | [`tenant_path()`] | tenant path strings | parse round-trips, `is_valid` agrees with `parse`, `covers` is the segment-prefix relation, tenant cutoffs follow it |
//! | `config` (feature `config`) | the text of a `tollgate serve` configuration file, through `tollgate_server::config::parse` | no panic; deterministic; an error is one line naming the file and echoes no password hash |
//! | `gateway_request` (feature `gateway`) | raw bytes on a connection to a real `tollgate gateway` in the process, in front of a recording upstream | nothing reaches a protected path (as an upstream would resolve it) without a valid token's identity; no identity header the client chose, in any spelling; no method override, `Proxy`, or upgrade but WebSocket; forward-auth allows protected paths only with an identity |
//! | `gateway_config` (feature `gateway`) | the text of a `gateway.toml`, through `tollgate_gateway::config::parse` | no panic; deterministic; an error is one line naming the file |
//! | [`token_service()`] | a whole HTTP request (method, path, headers, body) to [`TokenService`](tollgate_issuer::TokenService) | no panic; status in the endpoint's documented set; JSON bodies where promised; issued tokens verify |
//! | [`logout_token()`] | logout-token claims (and header) **signed** with the fixture key, or a raw request body, to a [`BackChannelLogout`](tollgate_signals::BackChannelLogout) receiver | status 200/400/413 only; an accepted token is for the fixture issuer and client, fresh, with the logout event, `sub` or `sid`, no `nonce`; it revokes that session or subject, and is refused the second time; a refused one revokes nothing |
//! | [`client_cert()`] | a `Client-Cert` header value (RFC 9440 or nginx's escaped PEM) to `tollgate_layer::client_cert::from_header`, and a subject DN to `tollgate_issuer::SubjectDn::parse` | no panic; a certificate read is a DER SEQUENCE with its own thumbprint; reads are deterministic; a DN prints as text that parses back to it |
//! | [`replication_wire()`] | what a Redis follower parses: stream entries' fields, raw `XREAD` replies (RESP2/3), the snapshot hash and its payload (through `tollgate_redis::fuzzing`) | no panic; what decodes re-encodes to the same events; the loader's split apply applies every line once, to the same state as applying one by one |
//!
//! Inputs are built from fixed keys and a fixed clock ([`fixture`]), so a committed seed (a real
//! token, a real form) means the same thing in every run.
#![warn(missing_docs)]
#![deny(unsafe_code, unreachable_pub)]

pub mod bearer;
pub mod client_cert;
#[cfg(feature = "config")]
pub mod config;
pub mod fixture;
#[cfg(feature = "gateway")]
pub mod gateway_config;
#[cfg(feature = "gateway")]
pub mod gateway_request;
pub mod logout_token;
pub mod replication_wire;
pub mod signed_claims;
pub mod tenant_path;
pub mod token_service;

pub use bearer::bearer;
pub use client_cert::client_cert;
#[cfg(feature = "config")]
pub use config::config;
#[cfg(feature = "gateway")]
pub use gateway_config::gateway_config;
#[cfg(feature = "gateway")]
pub use gateway_request::gateway_request;
pub use logout_token::logout_token;
pub use replication_wire::replication_wire;
pub use signed_claims::signed_claims;
pub use tenant_path::tenant_path;
pub use token_service::token_service;

use std::path::PathBuf;

/// A target's body: the fuzzer's bytes in, a panic for a broken invariant.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` file and corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("bearer", bearer),
    ("signed_claims", signed_claims),
    ("tenant_path", tenant_path),
    ("token_service", token_service),
    ("replication_wire", replication_wire),
    ("logout_token", logout_token),
    ("client_cert", client_cert),
    #[cfg(feature = "config")]
    ("config", config),
    #[cfg(feature = "gateway")]
    ("gateway_request", gateway_request),
    #[cfg(feature = "gateway")]
    ("gateway_config", gateway_config),
];

/// What every configuration target asks of an error for `fuzz.toml`, parsed twice: the same
/// message both times, one line, naming the file.
pub fn check_config_error(message: &str, again: &str) {
    assert_eq!(message, again, "parse is not deterministic");
    assert!(
        !message.contains(['\n', '\r']),
        "a configuration error is not one line: {message:?}"
    );
    assert!(
        message.starts_with("fuzz.toml"),
        "a configuration error does not name the file: {message:?}"
    );
}

/// The committed seed corpus of `target`: `fuzz/corpus/<target>/` at the workspace root.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}
