//! Model-based test of [`RevocationIndex`]: random sequences of revocation events (tokens, grants,
//! cutoffs at every scope and tenant depth, for every issuer or for one, duplicates, invalid
//! tenants and issuers), purges at random times and retention changes are applied both to the
//! index and to a plain model written from the design's rule; after every step, `check` must
//! agree with the model on a set of random tokens of several issuers, with and without a session.
//! A second property feeds two indexes the same events in different orders (and repeated), and
//! requires that they agree with each other and with the model.
//!
//! The rule (DESIGN.md, "The revocation model" and "Other issuers, other signals"): a token is
//! rejected iff its `jti` is revoked, or its grant is revoked, or its issue instant is earlier
//! than the maximum of every cutoff that applies to it: all, its tenant and each parent tenant,
//! its subject, its client and its session (`sid`, when it has one), each as a cutoff for every
//! issuer (`Cutoff`: tollgate's own events) and as a cutoff of its own issuer only
//! (`IssuerCutoff` whose issuer is its `iss`, compared exactly; another issuer's never applies,
//! even to a subject or session of the same name). Token and grant entries are forgotten once
//! their expiry is at or before `now - retention`.
//!
//! Values come from small pools so that ids, tenants, issuers, sessions and instants collide
//! often: the interesting cases are a cutoff of one scope or issuer meeting a cutoff of another.

use proptest::prelude::*;
use std::collections::HashMap;
use std::time::Duration;
use tollgate_core::{
    CutoffScope, RevocationEvent, RevocationIndex, Revoked, TokenIdentity, UnixMillis,
};

const JTIS: &[&str] = &["j0", "j1", "j2", "j3"];
const GRANTS: &[&str] = &["g0", "g1", "g2"];
const SUBJECTS: &[&str] = &["s0", "s1", "s2"];
const CLIENTS: &[&str] = &["c0", "c1", "c2"];
/// Valid tenants at every depth, including a sibling that shares a prefix (`/Ab` vs `/A`).
const TENANTS: &[&str] = &["/", "/A", "/A/B", "/A/B/C", "/Ab", "/Z", "/Z/B"];
/// What a cutoff may name but the index must refuse: no token matches them.
const BAD_TENANTS: &[&str] = &["", "A", "/A/", "//", "/A/../Z"];
/// The tokens' issuers: two that differ only by a trailing slash (they are different issuers).
const ISSUERS: &[&str] = &["https://a.example", "https://a.example/", "urn:b"];
/// Issuers that cutoffs may name: the tokens', one no token has, and the empty one, which the
/// index refuses (an issuer's cutoff names its issuer).
const CUTOFF_ISSUERS: &[&str] = &[
    "https://a.example",
    "https://a.example/",
    "urn:b",
    "urn:c",
    "",
];
/// Session ids (`sid`), shared between issuers so that their sessions collide by name.
const SESSIONS: &[&str] = &["x0", "x1"];

/// Instants in a small range (ms), so that cutoffs, issue instants and expiries meet.
fn instant() -> impl Strategy<Value = i64> {
    0i64..60
}

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(pool).prop_map(str::to_owned)
}

fn scope() -> impl Strategy<Value = CutoffScope> {
    prop_oneof![
        Just(CutoffScope::All),
        pick(TENANTS).prop_map(CutoffScope::Tenant),
        pick(BAD_TENANTS).prop_map(CutoffScope::Tenant),
        pick(SUBJECTS).prop_map(CutoffScope::Subject),
        pick(CLIENTS).prop_map(CutoffScope::Client),
        pick(SESSIONS).prop_map(CutoffScope::Session),
    ]
}

fn event() -> impl Strategy<Value = RevocationEvent> {
    prop_oneof![
        1 => (pick(JTIS), instant()).prop_map(|(jti, at)| RevocationEvent::Token {
            jti,
            expires_at: UnixMillis(at),
        }),
        1 => (pick(GRANTS), instant()).prop_map(|(grant_id, at)| RevocationEvent::Grant {
            grant_id,
            expires_at: UnixMillis(at),
        }),
        2 => (scope(), instant()).prop_map(|(scope, at)| RevocationEvent::Cutoff {
            scope,
            issued_before: UnixMillis(at),
        }),
        2 => (pick(CUTOFF_ISSUERS), scope(), instant()).prop_map(|(issuer, scope, at)| {
            RevocationEvent::IssuerCutoff {
                issuer,
                scope,
                issued_before: UnixMillis(at),
            }
        }),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Apply(RevocationEvent),
    /// Apply the event applied `n` steps ago (or the first) again: duplicates.
    Repeat(usize),
    Purge(i64),
    Retain(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => event().prop_map(Step::Apply),
        1 => (0usize..8).prop_map(Step::Repeat),
        1 => instant().prop_map(Step::Purge),
        1 => (0i64..20).prop_map(Step::Retain),
    ]
}

#[derive(Debug, Clone)]
struct Token {
    jti: String,
    grant: Option<String>,
    tenant: String,
    subject: String,
    client: String,
    issuer: String,
    session: Option<String>,
    issued_at: i64,
}

impl Token {
    fn identity(&self) -> TokenIdentity<'_> {
        TokenIdentity {
            jti: &self.jti,
            grant_id: self.grant.as_deref(),
            tenant: &self.tenant,
            subject: &self.subject,
            client_id: &self.client,
            issuer: &self.issuer,
            session: self.session.as_deref(),
            issued_at: UnixMillis(self.issued_at),
        }
    }
}

fn token() -> impl Strategy<Value = Token> {
    (
        (pick(JTIS), proptest::option::of(pick(GRANTS))),
        (pick(TENANTS), pick(SUBJECTS), pick(CLIENTS)),
        (pick(ISSUERS), proptest::option::of(pick(SESSIONS))),
        instant(),
    )
        .prop_map(
            |((jti, grant), (tenant, subject, client), (issuer, session), issued_at)| Token {
                jti,
                grant,
                tenant,
                subject,
                client,
                issuer,
                session,
                issued_at,
            },
        )
}

/// The obviously-correct model: plain maps, the rule spelled out, no shortcuts.
#[derive(Debug, Default)]
struct Model {
    tokens: HashMap<String, i64>,
    grants: HashMap<String, i64>,
    /// Cutoffs for every issuer's tokens.
    everyone: Cutoffs,
    /// Each issuer's own cutoffs, by the exact `iss` they apply to.
    issuers: HashMap<String, Cutoffs>,
    retention: i64,
}

/// One set of cutoffs: every scope's latest instant.
#[derive(Debug, Default)]
struct Cutoffs {
    all: Option<i64>,
    tenants: HashMap<String, i64>,
    subjects: HashMap<String, i64>,
    clients: HashMap<String, i64>,
    sessions: HashMap<String, i64>,
}

fn raise(map: &mut HashMap<String, i64>, key: &str, at: i64) -> bool {
    match map.get(key) {
        Some(&held) if held >= at => false,
        _ => {
            map.insert(key.to_owned(), at);
            true
        }
    }
}

/// `ancestor` covers `tenant` when its segments are a prefix of `tenant`'s (`/` covers all).
fn covers(ancestor: &str, tenant: &str) -> bool {
    let segments = |s: &str| {
        s.split('/')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (a, t) = (segments(ancestor), segments(tenant));
    a.len() <= t.len() && a == t[..a.len()]
}

impl Cutoffs {
    fn apply(&mut self, scope: &CutoffScope, at: i64) -> bool {
        match scope {
            CutoffScope::All => {
                let changed = self.all.is_none_or(|held| held < at);
                if changed {
                    self.all = Some(at);
                }
                changed
            }
            CutoffScope::Tenant(t) => raise(&mut self.tenants, t, at),
            CutoffScope::Subject(s) => raise(&mut self.subjects, s, at),
            CutoffScope::Client(c) => raise(&mut self.clients, c, at),
            CutoffScope::Session(s) => raise(&mut self.sessions, s, at),
            other => panic!("the model does not know {other:?}: teach it"),
        }
    }

    /// The instants of every cutoff here that applies to `t`.
    fn applicable(&self, t: &Token) -> Vec<i64> {
        let mut applicable: Vec<i64> = Vec::new();
        applicable.extend(self.all);
        applicable.extend(self.subjects.get(&t.subject));
        applicable.extend(self.clients.get(&t.client));
        if let Some(session) = &t.session {
            applicable.extend(self.sessions.get(session));
        }
        applicable.extend(
            self.tenants
                .iter()
                .filter(|(tenant, _)| covers(tenant, &t.tenant))
                .map(|(_, at)| *at),
        );
        applicable
    }

    fn len(&self) -> usize {
        usize::from(self.all.is_some())
            + self.tenants.len()
            + self.subjects.len()
            + self.clients.len()
            + self.sessions.len()
    }
}

impl Model {
    fn apply(&mut self, event: &RevocationEvent) -> bool {
        match event {
            RevocationEvent::Token { jti, expires_at } => {
                raise(&mut self.tokens, jti, expires_at.0)
            }
            RevocationEvent::Grant {
                grant_id,
                expires_at,
            } => raise(&mut self.grants, grant_id, expires_at.0),
            RevocationEvent::Cutoff { scope, .. } | RevocationEvent::IssuerCutoff { scope, .. }
                if matches!(scope, CutoffScope::Tenant(t) if BAD_TENANTS.contains(&t.as_str())) =>
            {
                false
            }
            RevocationEvent::Cutoff {
                scope,
                issued_before,
            } => self.everyone.apply(scope, issued_before.0),
            // An issuer's cutoff names its issuer: without one it applies to nobody.
            RevocationEvent::IssuerCutoff { issuer, .. } if issuer.is_empty() => false,
            RevocationEvent::IssuerCutoff {
                issuer,
                scope,
                issued_before,
            } => self
                .issuers
                .entry(issuer.clone())
                .or_default()
                .apply(scope, issued_before.0),
            other => panic!("the model does not know {other:?}: teach it"),
        }
    }

    fn purge(&mut self, now: i64) -> usize {
        let horizon = now - self.retention;
        let before = self.tokens.len() + self.grants.len();
        self.tokens.retain(|_, exp| *exp > horizon);
        self.grants.retain(|_, exp| *exp > horizon);
        before - self.tokens.len() - self.grants.len()
    }

    /// The latest of everyone's cutoffs that apply to `t` and of its own issuer's.
    fn effective_cutoff(&self, t: &Token) -> Option<i64> {
        let mut applicable = self.everyone.applicable(t);
        if let Some(own) = self.issuers.get(&t.issuer) {
            applicable.extend(own.applicable(t));
        }
        applicable.into_iter().max()
    }

    fn check(&self, t: &Token) -> Result<(), Revoked> {
        if self.tokens.contains_key(&t.jti) {
            return Err(Revoked::Token);
        }
        if t.grant
            .as_ref()
            .is_some_and(|g| self.grants.contains_key(g))
        {
            return Err(Revoked::Grant);
        }
        match self.effective_cutoff(t) {
            Some(at) if t.issued_at < at => Err(Revoked::Cutoff {
                issued_before: UnixMillis(at),
            }),
            _ => Ok(()),
        }
    }

    fn entries(&self) -> (usize, usize, usize) {
        (
            self.tokens.len(),
            self.grants.len(),
            self.everyone.len() + self.issuers.values().map(Cutoffs::len).sum::<usize>(),
        )
    }
}

fn assert_agrees(index: &RevocationIndex, model: &Model, tokens: &[Token], context: &str) {
    for t in tokens {
        assert_eq!(
            index.check(&t.identity()),
            model.check(t),
            "{context}: check disagrees on {t:?}\nmodel: {model:?}"
        );
        assert_eq!(
            index.effective_cutoff(&t.identity()),
            model
                .effective_cutoff(t)
                .map_or(UnixMillis::MIN, UnixMillis),
            "{context}: effective cutoff of {t:?}"
        );
    }
    let stats = index.stats();
    assert_eq!(
        (stats.tokens, stats.grants, stats.cutoffs),
        model.entries(),
        "{context}: entry counts"
    );
}

fn sorted_snapshot(index: &RevocationIndex) -> Vec<String> {
    let mut events: Vec<String> = index
        .snapshot()
        .iter()
        .map(|e| serde_json::to_string(e).expect("events serialize"))
        .collect();
    events.sort();
    events
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The index and the model agree after every step of a random history.
    #[test]
    fn index_agrees_with_the_model_at_every_step(
        steps in proptest::collection::vec(step(), 1..40),
        tokens in proptest::collection::vec(token(), 12),
    ) {
        let index = RevocationIndex::new();
        let mut model = Model::default();
        let mut applied: Vec<RevocationEvent> = Vec::new();
        for (n, step) in steps.iter().enumerate() {
            let context = format!("step {n} ({step:?})");
            match step {
                Step::Apply(_) | Step::Repeat(_) => {
                    let event = match step {
                        Step::Apply(event) => event.clone(),
                        // The event applied `back` steps ago, or the first one.
                        Step::Repeat(back) if !applied.is_empty() => {
                            applied[applied.len().saturating_sub(1 + back)].clone()
                        }
                        _ => continue,
                    };
                    prop_assert_eq!(index.apply(&event), model.apply(&event), "{}: apply's answer", context);
                    applied.push(event);
                }
                Step::Purge(now) => {
                    prop_assert_eq!(index.purge_expired(UnixMillis(*now)), model.purge(*now), "{}: purged count", context);
                }
                Step::Retain(ms) => {
                    index.retain_expired_for(Duration::from_millis(*ms as u64));
                    model.retention = model.retention.max(*ms);
                }
            }
            assert_agrees(&index, &model, &tokens, &context);
        }
        // The snapshot is the whole state: replayed into an empty index, it judges alike.
        let replica = RevocationIndex::new();
        replica.retain_expired_for(Duration::from_millis(model.retention as u64));
        for event in index.snapshot() {
            replica.apply(&event);
        }
        assert_agrees(&replica, &model, &tokens, "snapshot replica");
    }

    /// Applying is commutative and idempotent: any order, any duplicates, same state.
    #[test]
    fn order_and_duplicates_do_not_matter(
        (events, shuffled) in proptest::collection::vec(event(), 1..30)
            .prop_flat_map(|events| (Just(events.clone()), Just(events).prop_shuffle())),
        duplicates in proptest::collection::vec(any::<proptest::sample::Index>(), 0..10),
        purge_at in proptest::option::of(instant()),
        tokens in proptest::collection::vec(token(), 12),
    ) {
        let forward = RevocationIndex::new();
        let mut model = Model::default();
        for event in &events {
            forward.apply(event);
            model.apply(event);
        }
        let other = RevocationIndex::new();
        for event in shuffled.iter().chain(duplicates.iter().map(|i| i.get(&events))) {
            other.apply(event);
        }
        if let Some(now) = purge_at {
            forward.purge_expired(UnixMillis(now));
            other.purge_expired(UnixMillis(now));
            model.purge(now);
        }
        assert_agrees(&forward, &model, &tokens, "in order");
        assert_agrees(&other, &model, &tokens, "shuffled with duplicates");
        prop_assert_eq!(sorted_snapshot(&forward), sorted_snapshot(&other));
    }
}

/// The model itself, on the cases DESIGN.md spells out (a test of the test).
#[test]
fn model_follows_the_documented_rule() {
    let mut model = Model::default();
    let t = Token {
        jti: "j0".into(),
        grant: Some("g0".into()),
        tenant: "/A/B".into(),
        subject: "s0".into(),
        client: "c0".into(),
        issuer: "https://a.example".into(),
        session: Some("x0".into()),
        issued_at: 10,
    };
    assert_eq!(model.check(&t), Ok(()));
    // Another issuer's cutoffs, even on this token's subject and session, and even one whose
    // issuer differs only by a trailing slash, apply to none of its tokens.
    for issuer in ["urn:b", "https://a.example/"] {
        for scope in [
            CutoffScope::All,
            CutoffScope::Subject("s0".into()),
            CutoffScope::Session("x0".into()),
        ] {
            model.apply(&RevocationEvent::IssuerCutoff {
                issuer: issuer.into(),
                scope,
                issued_before: UnixMillis(50),
            });
        }
    }
    assert_eq!(model.check(&t), Ok(()), "another issuer's cutoffs");
    model.apply(&RevocationEvent::Cutoff {
        scope: CutoffScope::Session("x1".into()),
        issued_before: UnixMillis(50),
    });
    assert_eq!(model.check(&t), Ok(()), "another session");
    let no_session = Token {
        session: None,
        ..t.clone()
    };
    model.apply(&RevocationEvent::IssuerCutoff {
        issuer: "https://a.example".into(),
        scope: CutoffScope::Session("x0".into()),
        issued_before: UnixMillis(11),
    });
    assert_eq!(
        model.check(&t),
        Err(Revoked::Cutoff {
            issued_before: UnixMillis(11)
        }),
        "its own issuer's cutoff of its session"
    );
    assert_eq!(
        model.check(&no_session),
        Ok(()),
        "a token without a session"
    );
    let mut model = Model::default();
    model.apply(&RevocationEvent::Cutoff {
        scope: CutoffScope::Tenant("/Ab".into()),
        issued_before: UnixMillis(50),
    });
    assert_eq!(model.check(&t), Ok(()), "/Ab does not cover /A/B");
    model.apply(&RevocationEvent::Cutoff {
        scope: CutoffScope::Tenant("/A".into()),
        issued_before: UnixMillis(5),
    });
    assert_eq!(model.check(&t), Ok(()), "issued after the parent's cutoff");
    model.apply(&RevocationEvent::Cutoff {
        scope: CutoffScope::Client("c0".into()),
        issued_before: UnixMillis(11),
    });
    assert_eq!(
        model.check(&t),
        Err(Revoked::Cutoff {
            issued_before: UnixMillis(11)
        })
    );
    model.apply(&RevocationEvent::Grant {
        grant_id: "g0".into(),
        expires_at: UnixMillis(20),
    });
    assert_eq!(model.check(&t), Err(Revoked::Grant));
    model.retention = 5;
    assert_eq!(model.purge(24), 0);
    assert_eq!(model.purge(25), 1);
    assert!(model.check(&t).is_err());
}
