//! What every endpoint shares: the [`Ledger`] and the parties that prove who is asking.

use crate::auth::{ClientAuthenticator, SignIn};
use crate::directory::DeclaredTenants;
use crate::ledger::Ledger;
use crate::store::StoreError;
use std::fmt;
use std::sync::Arc;

/// The issuer's state, as the endpoints see it.
pub(crate) struct Issuer {
    /// Issued and revoked tokens: every durable change goes through it.
    pub(crate) ledger: Arc<Ledger>,
    /// Client authentication.
    pub(crate) clients: ClientAuthenticator,
    /// Users: password sign-in and lookups by subject.
    pub(crate) users: SignIn,
    /// The role the batch-revocation API requires.
    pub(crate) admin_role: String,
    /// The tenants a token may be issued for.
    pub(crate) tenants: DeclaredTenants,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenService")
            .field("ledger", &self.ledger)
            .field("admin_role", &self.admin_role)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Forgets what expired: live tokens, index entries, store rows, quiet throttle records.
    pub(crate) async fn purge(&self) -> Result<(), StoreError> {
        let now = self.ledger.now();
        self.users.forget_quiet(now);
        self.clients.forget_quiet(now);
        self.ledger.purge().await
    }
}
