//! Revocation: the events that revoke tokens and the in-memory index that applies them.
//!
//! A token is rejected iff its `jti` is revoked, or its grant is revoked, or its issue instant is
//! earlier than the **maximum** of every cutoff that applies to it (all tokens, its tenant and each
//! parent tenant, its subject, its client, its session), each for every issuer's tokens or for
//! its own issuer's only. Applying events is idempotent and commutative, so
//! replicas that receive the same events in any order, any number of times, converge.

mod event;
mod index;

pub use event::{CutoffScope, RevocationEvent};
pub use index::{IndexStats, RevocationIndex, Revoked, TokenIdentity};
