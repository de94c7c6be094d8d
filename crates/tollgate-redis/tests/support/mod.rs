//! Shared by the replication tests: a producer (store + index + relay), a partitionable TCP
//! proxy in front of Redis, and convergence checks.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, broadcast};
use tollgate_core::{CutoffScope, RevocationEvent, RevocationIndex, UnixMillis};
use tollgate_store::{MemoryStore, Outbox, Record, Store};

/// Waits (polling every 20 ms) until `$ready` holds; fails naming `$what` after 15 s.
macro_rules! eventually {
    ($what:expr, $ready:expr) => {{
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        while !$ready {
            assert!(tokio::time::Instant::now() < deadline, "never: {}", $what);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}

/// Far enough in the future that nothing expires during a test.
pub const LATER: UnixMillis = UnixMillis(4_000_000_000_000);

pub fn token(i: usize) -> RevocationEvent {
    RevocationEvent::Token {
        jti: format!("jti-{i}"),
        expires_at: LATER,
    }
}

pub fn cutoff(subject: &str, at: i64) -> RevocationEvent {
    RevocationEvent::Cutoff {
        scope: CutoffScope::Subject(subject.into()),
        issued_before: UnixMillis(at),
    }
}

/// A cutoff of `issuer`'s tokens of `subject` (version 2 of the wire format).
pub fn issuer_cutoff(issuer: &str, subject: &str, at: i64) -> RevocationEvent {
    RevocationEvent::cutoff(
        Some(issuer),
        CutoffScope::Subject(subject.into()),
        UnixMillis(at),
    )
}

/// A cutoff of every token of `session` (version 2 of the wire format).
pub fn session_cutoff(session: &str, at: i64) -> RevocationEvent {
    RevocationEvent::Cutoff {
        scope: CutoffScope::Session(session.into()),
        issued_before: UnixMillis(at),
    }
}

/// Appends an entry with exactly these fields to `keys`' stream, as a producer of another
/// version (or no producer of tollgate's) would; returns its id.
pub async fn xadd(
    connection: &mut redis::aio::MultiplexedConnection,
    keys: &tollgate_redis::wire::Keys,
    fields: &[(&str, &[u8])],
) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&keys.stream).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(*value);
    }
    cmd.query_async(connection).await.expect("XADD")
}

/// The field names of the entries of `keys`' stream, in order.
pub async fn field_names(
    connection: &mut redis::aio::MultiplexedConnection,
    keys: &tollgate_redis::wire::Keys,
) -> Vec<String> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&keys.stream)
        .arg("-")
        .arg("+")
        .query_async(connection)
        .await
        .expect("XRANGE");
    reply
        .ids
        .into_iter()
        .flat_map(|entry| entry.map.into_keys())
        .collect()
}

/// An index's state, comparable.
pub fn state(index: &RevocationIndex) -> BTreeSet<String> {
    index.snapshot().iter().map(|e| format!("{e:?}")).collect()
}

/// Waits (polling) until `follower` holds what `producer` holds; panics with the difference.
pub async fn converge(producer: &RevocationIndex, follower: &RevocationIndex, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (want, got) = (state(producer), state(follower));
        if want == got {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let missing: Vec<_> = want.difference(&got).take(5).collect();
            let extra: Vec<_> = got.difference(&want).take(5).collect();
            panic!(
                "no convergence within {within:?}: {} wanted, {} held; missing e.g. {missing:?}, \
                 extra e.g. {extra:?}",
                want.len(),
                got.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a token service does on a revocation, without HTTP: durable in the store, applied to
/// its index, relay woken.
pub struct Producer {
    pub store: Arc<MemoryStore>,
    pub index: Arc<RevocationIndex>,
    pub wake: Arc<Notify>,
}

impl Producer {
    pub fn new() -> Self {
        Producer {
            store: Arc::new(MemoryStore::new()),
            index: Arc::new(RevocationIndex::new()),
            wake: Arc::new(Notify::new()),
        }
    }

    pub async fn revoke(&self, event: RevocationEvent) {
        self.store
            .commit(vec![Record::Revocation(event.clone())])
            .await
            .expect("commit");
        self.index.apply(&event);
        self.wake.notify_one();
    }

    /// The store's outbox, which the relay publishes.
    pub fn store(&self) -> Arc<dyn Outbox> {
        self.store.clone()
    }
}

/// A TCP proxy in front of Redis that can cut every connection and refuse new ones (a network
/// partition), then let them through again.
pub struct Proxy {
    pub port: u16,
    open: Arc<AtomicBool>,
    cut: broadcast::Sender<()>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let (cut, _) = broadcast::channel(4);
        let (gate, cuts) = (open.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !gate.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut stop = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = stop.recv() => {}
                    }
                });
            }
        });
        Proxy { port, open, cut }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Cuts every connection and refuses new ones.
    pub fn partition(&self) {
        self.open.store(false, Ordering::SeqCst);
        let _ = self.cut.send(());
    }

    pub fn heal(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// A raw connection to Redis for the test's own commands.
pub async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test's Redis")
}

/// How many entries the default stream holds.
pub async fn stream_len(connection: &mut redis::aio::MultiplexedConnection) -> usize {
    redis::cmd("XLEN")
        .arg(&tollgate_redis::wire::Keys::default().stream)
        .query_async(connection)
        .await
        .expect("XLEN")
}
