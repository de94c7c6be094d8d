//! The publisher lease: which one of the processes sharing the database publishes its outbox
//! (`tollgate_store::Outbox::publisher_lease`).
//!
//! Every replica runs a relay over the same outbox; without a lease each would publish every
//! event, N replicas making N copies. The lease is a session-level advisory lock,
//! [`PUBLISHER_LOCK`], taken with `pg_try_advisory_lock` on a connection of its own (outside the
//! pool, so that no other work ever runs in, or closes, the session that holds it). PostgreSQL
//! releases it when that session ends, however it ends:
//!
//! - the holder stops, or its process dies: the kernel closes the socket, the server ends the
//!   session at once, and a relay standing by takes the lease at its next look (the relay of
//!   `tollgate-redis` looks every second);
//! - the holder's machine vanishes (no FIN ever comes): the session is asked, at connect time,
//!   for server-side TCP keepalives (idle 5 s, every 1 s, 5 probes) and a `tcp_user_timeout` of
//!   10 s, so the server ends it within [`DEAD_HOLDER_RELEASED_WITHIN`].
//!
//! So the lease changes hands within [`TAKEOVER_BOUND`] of its holder's death. The holder checks
//! its session (a `SELECT 1`, at most every [`CHECK_EVERY`], bounded by the connect timeout) and
//! gives the lease up when the check fails, which is sooner than the server releases the lock:
//! two publishers at once are possible only in the moment between, and cost duplicates, which
//! followers absorb (applying an event is idempotent).
//!
//! Why an advisory lock rather than a lease row with an expiry: it needs no clock, no renewal
//! writes, and is released by the database itself the moment its holder is gone, rather than
//! after an expiry chosen longer than the longest pause. Its cost is that it needs a real
//! session: through pgbouncer in *transaction* mode a session-level lock lands on whatever server
//! connection the statement got; point tollgate at PostgreSQL directly, or at a pgbouncer pool in
//! session mode.

use crate::failure::Failure;
use crate::tls::MakeRustls;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_postgres::{Client, Config};

/// The session-level advisory lock whose holder publishes the outbox ("tollpubl").
pub const PUBLISHER_LOCK: i64 = 0x746f_6c6c_7075_626c;

/// How often the holder makes sure the session that holds the lease is still alive.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long, at most, the server keeps the session (and so the lease) of a holder whose machine
/// vanished without closing its connection: TCP keepalives after 5 s idle, 5 probes 1 s apart,
/// and a `tcp_user_timeout` of 10 s for data left unacknowledged.
pub const DEAD_HOLDER_RELEASED_WITHIN: Duration = Duration::from_secs(10);

/// How long after its holder's death the lease is taken by a relay standing by: the server's
/// release ([`DEAD_HOLDER_RELEASED_WITHIN`], or at once for a process that died on a machine
/// that lives on) plus one look of the relay standing by (1 s) and a connect.
pub const TAKEOVER_BOUND: Duration = Duration::from_secs(15);

/// The lease's connection and whether it holds the lock.
pub(crate) struct Lease {
    config: Config,
    /// The store's TLS connector: the lease's connection is made as the pool's are.
    tls: MakeRustls,
    timeout: Duration,
    session: Mutex<Session>,
}

#[derive(Default)]
struct Session {
    client: Option<Client>,
    held: bool,
    checked: Option<Instant>,
}

impl Lease {
    /// A lease taken on connections made with `config` and `tls` (the store's), each exchange
    /// bounded by `timeout`.
    pub(crate) fn new(config: &Config, tls: MakeRustls, timeout: Duration) -> Lease {
        let mut config = config.clone();
        // The server notices a vanished holder by itself (see the module docs); these settings
        // are the session's own (any user may set them).
        let options = format!(
            "{} -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=5 \
             -c tcp_user_timeout=10000",
            config.get_options().unwrap_or("")
        );
        config
            .options(options.trim())
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(5)
            .tcp_user_timeout(DEAD_HOLDER_RELEASED_WITHIN)
            .application_name("tollgate publisher lease");
        Lease {
            config,
            tls,
            timeout,
            session: Mutex::new(Session::default()),
        }
    }

    /// Takes the lease if it is free, and says whether this process holds it. A failure drops
    /// the connection, which ends its session and releases the lease if it was held.
    pub(crate) async fn take(&self) -> Result<bool, Failure> {
        let mut session = self.session.lock().await;
        let outcome = match tokio::time::timeout(self.timeout, self.take_in(&mut session)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::lost(format!(
                "publisher lease: no answer within {:?}",
                self.timeout
            ))),
        };
        if outcome.is_err() {
            if session.held {
                tracing::warn!("publisher lease lost: this process stops publishing the outbox");
            }
            *session = Session::default();
        }
        outcome
    }

    async fn take_in(&self, session: &mut Session) -> Result<bool, Failure> {
        if session.client.as_ref().is_some_and(Client::is_closed) {
            if session.held {
                tracing::warn!("publisher lease lost: its connection closed");
            }
            *session = Session::default();
        }
        if session.held && session.checked.is_some_and(|at| at.elapsed() < CHECK_EVERY) {
            return Ok(true);
        }
        let client = match session.client.take() {
            Some(client) => client,
            None => {
                let (client, connection) = self.config.connect(self.tls.clone()).await?;
                tokio::spawn(connection);
                client
            }
        };
        let client = session.client.insert(client);
        if session.held {
            // The session that took the lock lives on, so the lock is still its own.
            client.simple_query("SELECT 1").await?;
        } else {
            let row = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&PUBLISHER_LOCK])
                .await?;
            session.held = row.try_get(0)?;
            if session.held {
                tracing::info!("publisher lease taken: this process publishes the outbox");
            }
        }
        session.checked = Some(Instant::now());
        Ok(session.held)
    }
}
