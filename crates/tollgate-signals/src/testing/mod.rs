//! A test kit for receivers of signals, with the `test-util` feature: **not a stable API**, it
//! changes with the tests that use it, in any release.
//!
//! [`Transmitter`] is an OpenID Shared Signals transmitter on 127.0.0.1, written from SSF 1.0,
//! RFC 8935 and RFC 8936 rather than from this crate's receiver, so that a receiver is tested
//! against what the specifications say: this crate's tests use it, and so do those of programs
//! that configure a receiver (`tollgate gateway`'s `[[shared_signals]]`).
//!
//! # Example
//!
//! ```no_run
//! use serde_json::json;
//! use tollgate_signals::ssf::event_types::CAEP_SESSION_REVOKED;
//! use tollgate_signals::testing::Transmitter;
//!
//! # async fn test() {
//! let tx = Transmitter::start("https://api.example.com", "management-token").await;
//! // ... configure a receiver of `tx.issuer()` for that audience, with that bearer token ...
//! let subject = json!({"format": "iss_sub", "iss": "https://id.example.com", "sub": "alice"});
//! let (jti, set) = tx.set(&tx.claims(CAEP_SESSION_REVOKED, subject, json!({})));
//! tx.enqueue(&jti, &set); // delivered by the next poll
//! # }
//! ```

mod transmitter;

pub use transmitter::{Transmitter, now};
