//! The claims of an RFC 9068 JWT access token, plus tollgate's own (`tenant`, `roles`,
//! `grant_id`, `iat_ms`) and OpenID Connect's session id (`sid`), with unknown claims kept for
//! the caller.

use crate::{TokenIdentity, UnixMillis};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

/// The `aud` claim: one audience or several (RFC 7519 §4.1.3).
///
/// Deliberately exhaustive: the two variants are the two JSON shapes RFC 7519 allows, and
/// readers match on them to serialize the claim back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// A single audience, serialized as a string.
    One(String),
    /// Several audiences, serialized as an array.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` names `audience`.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
    }

    /// Every audience named.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self {
            Audience::One(a) => (Some(a.as_str()), &[][..]),
            Audience::Many(all) => (None, all.as_slice()),
        };
        one.into_iter().chain(many.iter().map(String::as_str))
    }
}

/// The verified claims of an access token.
///
/// Required (RFC 9068 §2.2): `iss`, `sub`, `aud`, `exp`, `iat`, `jti`, `client_id`. A JSON
/// document that lacks one of them, or names a claim twice, does not deserialize.
///
/// Non-exhaustive: more registered claims may get fields of their own. Build one with
/// [`Claims::new`] (then set the public fields) or by deserializing.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Claims {
    /// `iss`: the issuer.
    pub iss: String,
    /// `sub`: the resource owner, or the client id for `client_credentials` tokens.
    pub sub: String,
    /// `aud`: the intended resource servers.
    pub aud: Audience,
    /// `exp`: expiry, Unix seconds.
    pub exp: i64,
    /// `iat`: issue instant, Unix seconds.
    pub iat: i64,
    /// `nbf`: not valid before, Unix seconds.
    pub nbf: Option<i64>,
    /// `jti`: the token's unique id.
    pub jti: String,
    /// `client_id`: the client the token was issued to.
    pub client_id: String,
    /// `scope`: space-separated scopes (empty when absent).
    pub scope: String,
    /// `tenant`: the tenant path the token belongs to; absent means the root tenant `/`.
    pub tenant: Option<String>,
    /// `roles`: the subject's roles.
    pub roles: Vec<String>,
    /// `grant_id`: the refresh-token family the token was minted from, if any.
    pub grant_id: Option<String>,
    /// `iat_ms`: the issue instant in Unix milliseconds (tollgate tokens always carry it).
    pub issued_at_ms: Option<i64>,
    /// `sid`: the identity provider's session the token was issued in (OpenID Connect
    /// Front-/Back-Channel Logout), which a session cutoff names.
    pub sid: Option<String>,
    /// `cnf`: what the token is bound to (RFC 7800), such as the client certificate of a
    /// certificate-bound token (RFC 8705 §3). A `cnf` that is not a JSON object, names a member
    /// twice, or whose `x5t#S256` is not a SHA-256 thumbprint in base64url does not
    /// deserialize: a malformed binding refuses the token rather than unbinding it.
    pub cnf: Option<Confirmation>,
    /// Every other claim, as sent.
    pub extra: Map<String, Value>,
}

impl Claims {
    /// Claims for a new access token issued at `issued_at` for `lifetime`: `iat`, `iat_ms` and
    /// `exp` are set from them, `jti` is 128 random bits (22 base64url characters, which the
    /// revocation index stores without a heap allocation). Scope, tenant, roles and grant are
    /// empty; set the public fields as needed.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tollgate_core::{Audience, Claims};
    ///
    /// let mut claims = Claims::new(
    ///     "https://id.example.com",
    ///     "alice",
    ///     Audience::One("orders-api".into()),
    ///     "web",
    ///     SystemTime::now().into(),
    ///     Duration::from_secs(300),
    /// );
    /// claims.scope = "orders:read".into();
    /// assert_eq!(claims.jti.len(), 22);
    /// ```
    pub fn new(
        issuer: impl Into<String>,
        subject: impl Into<String>,
        audience: Audience,
        client_id: impl Into<String>,
        issued_at: UnixMillis,
        lifetime: Duration,
    ) -> Self {
        Claims {
            iss: issuer.into(),
            sub: subject.into(),
            aud: audience,
            exp: issued_at.saturating_add(lifetime).as_secs(),
            iat: issued_at.as_secs(),
            nbf: None,
            jti: crate::random::id(),
            client_id: client_id.into(),
            scope: String::new(),
            tenant: None,
            roles: Vec::new(),
            grant_id: None,
            issued_at_ms: Some(issued_at.0),
            sid: None,
            cnf: None,
            extra: Map::new(),
        }
    }

    /// The tenant path, `/` when the token names none.
    pub fn tenant(&self) -> &str {
        self.tenant.as_deref().unwrap_or("/")
    }

    /// Whether the token carries scope `wanted`.
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scopes().any(|s| s == wanted)
    }

    /// The scopes, split on spaces.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }

    /// Whether the subject has role `wanted`.
    pub fn has_role(&self, wanted: &str) -> bool {
        self.roles.iter().any(|r| r == wanted)
    }

    /// The issue instant at millisecond precision.
    ///
    /// Tokens without `iat_ms` are judged conservatively: a token with `iat` = 12:00:00 may have
    /// been issued at any point of that second, so it is taken as issued at its very start and a
    /// cutoff anywhere inside that second rejects it. An `iat_ms` that disagrees with `iat` is
    /// ignored for the same reason.
    pub fn issued_at(&self) -> UnixMillis {
        let from_iat = UnixMillis::from_secs(self.iat);
        match self.issued_at_ms {
            Some(ms) if UnixMillis(ms).as_secs() == self.iat => UnixMillis(ms),
            _ => from_iat,
        }
    }

    /// The facts the revocation index judges this token by.
    pub fn identity(&self) -> TokenIdentity<'_> {
        TokenIdentity {
            jti: &self.jti,
            grant_id: self.grant_id.as_deref(),
            tenant: self.tenant(),
            subject: &self.sub,
            client_id: &self.client_id,
            issuer: &self.iss,
            session: self.sid.as_deref(),
            issued_at: self.issued_at(),
        }
    }
}

impl Serialize for Claims {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("iss", &self.iss)?;
        map.serialize_entry("sub", &self.sub)?;
        match &self.aud {
            Audience::One(a) => map.serialize_entry("aud", a)?,
            Audience::Many(all) => map.serialize_entry("aud", all)?,
        }
        map.serialize_entry("exp", &self.exp)?;
        map.serialize_entry("iat", &self.iat)?;
        if let Some(nbf) = self.nbf {
            map.serialize_entry("nbf", &nbf)?;
        }
        map.serialize_entry("jti", &self.jti)?;
        map.serialize_entry("client_id", &self.client_id)?;
        if !self.scope.is_empty() {
            map.serialize_entry("scope", &self.scope)?;
        }
        if let Some(tenant) = &self.tenant {
            map.serialize_entry("tenant", tenant)?;
        }
        if !self.roles.is_empty() {
            map.serialize_entry("roles", &self.roles)?;
        }
        if let Some(gid) = &self.grant_id {
            map.serialize_entry("grant_id", gid)?;
        }
        if let Some(ms) = self.issued_at_ms {
            map.serialize_entry("iat_ms", &ms)?;
        }
        if let Some(sid) = &self.sid {
            map.serialize_entry("sid", sid)?;
        }
        if let Some(cnf) = &self.cnf {
            map.serialize_entry("cnf", cnf)?;
        }
        for (k, v) in &self.extra {
            if !is_known(k) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

const KNOWN: [&str; 15] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "client_id",
    "scope",
    "tenant",
    "roles",
    "grant_id",
    "iat_ms",
    "sid",
    "cnf",
];

fn is_known(name: &str) -> bool {
    KNOWN.contains(&name)
}

/// The `cnf` (confirmation) claim of RFC 7800: the proof-of-possession key or certificate a
/// token is bound to.
///
/// tollgate checks one confirmation method, `x5t#S256` (RFC 8705 §3.1: the SHA-256 thumbprint
/// of the client certificate, base64url without padding). Other members (`jkt` of DPoP, `jwk`,
/// `kid`, ...) are kept in [`other`](Self::other) as sent, so that a token re-serialized keeps
/// them and a verifier can see that the token asks for a check it does not make (the Layer
/// refuses such tokens: accepting them would drop the binding their issuer asked for).
///
/// Non-exhaustive: build one with [`Confirmation::certificate`].
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Confirmation {
    /// `x5t#S256`: the thumbprint of the certificate the token is bound to. Always 43
    /// base64url characters once deserialized.
    pub x5t_s256: Option<String>,
    /// Every other member, as sent.
    pub other: Map<String, Value>,
}

/// The member name of the certificate thumbprint (RFC 8705 §3.1).
const X5T_S256: &str = "x5t#S256";

impl Confirmation {
    /// A binding to the certificate with thumbprint `x5t_s256` (as
    /// [`ClientCertificate::x5t_s256`](crate::ClientCertificate::x5t_s256) gives it).
    pub fn certificate(x5t_s256: impl Into<String>) -> Self {
        Confirmation {
            x5t_s256: Some(x5t_s256.into()),
            other: Map::new(),
        }
    }
}

/// Whether `value` can be a SHA-256 thumbprint in base64url without padding: 43 characters of
/// the URL-safe alphabet (32 bytes).
fn is_thumbprint(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Serialize for Confirmation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(x5t) = &self.x5t_s256 {
            map.serialize_entry(X5T_S256, x5t)?;
        }
        for (k, v) in &self.other {
            if k != X5T_S256 {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Confirmation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Confirmation;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a confirmation (cnf) object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Confirmation, A::Error> {
                let mut cnf = Confirmation::default();
                while let Some(name) = map.next_key::<String>()? {
                    if name == X5T_S256 {
                        let x5t = map.next_value::<String>()?;
                        if !is_thumbprint(&x5t) {
                            return Err(de::Error::custom(
                                "cnf x5t#S256 is not a base64url SHA-256 thumbprint",
                            ));
                        }
                        if cnf.x5t_s256.replace(x5t).is_some() {
                            return Err(de::Error::custom("cnf names x5t#S256 twice"));
                        }
                    } else {
                        let value: Value = map.next_value()?;
                        if cnf.other.insert(name, value).is_some() {
                            return Err(de::Error::custom("cnf names a member twice"));
                        }
                    }
                }
                Ok(cnf)
            }
        }
        d.deserialize_map(V)
    }
}

/// A NumericDate (RFC 7519 §2): integer or fractional seconds; fractions are dropped.
struct NumericDate(i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a NumericDate")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                i64::try_from(v)
                    .map(NumericDate)
                    .map_err(|_| E::custom("NumericDate out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                if v.is_finite() && v.abs() < 1e15 {
                    Ok(NumericDate(v.floor() as i64))
                } else {
                    Err(E::custom("NumericDate out of range"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Audience;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience::One(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Audience, E> {
                Ok(Audience::One(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let mut all = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
                while let Some(a) = seq.next_element::<String>()? {
                    all.push(a);
                }
                Ok(Audience::Many(all))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Audience::One(a) => s.serialize_str(a),
            Audience::Many(all) => all.serialize(s),
        }
    }
}

enum Field {
    Known(usize),
    Other(String),
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a claim name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match KNOWN.iter().position(|k| *k == v) {
                    Some(i) => Field::Known(i),
                    None => Field::Other(v.to_owned()),
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Claims;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JWT claims object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
                let mut seen = [false; KNOWN.len()];
                let (mut iss, mut sub, mut aud, mut exp, mut iat) = (None, None, None, None, None);
                let (mut nbf, mut jti, mut client_id, mut scope) = (None, None, None, None);
                let (mut tenant, mut roles, mut grant_id, mut iat_ms) = (None, None, None, None);
                let (mut sid, mut cnf) = (None, None);
                let mut extra = Map::new();
                while let Some(field) = map.next_key::<Field>()? {
                    let i = match field {
                        Field::Known(i) => i,
                        Field::Other(name) => {
                            let value: Value = map.next_value()?;
                            if extra.insert(name, value).is_some() {
                                return Err(de::Error::custom("a claim is named twice"));
                            }
                            continue;
                        }
                    };
                    if std::mem::replace(&mut seen[i], true) {
                        return Err(de::Error::custom(format_args!(
                            "claim `{}` is named twice",
                            KNOWN[i]
                        )));
                    }
                    match i {
                        0 => iss = Some(map.next_value::<String>()?),
                        1 => sub = Some(map.next_value::<String>()?),
                        2 => aud = Some(map.next_value::<Audience>()?),
                        3 => exp = Some(map.next_value::<NumericDate>()?.0),
                        4 => iat = Some(map.next_value::<NumericDate>()?.0),
                        5 => nbf = Some(map.next_value::<NumericDate>()?.0),
                        6 => jti = Some(map.next_value::<String>()?),
                        7 => client_id = Some(map.next_value::<String>()?),
                        8 => scope = Some(map.next_value::<String>()?),
                        9 => tenant = Some(map.next_value::<String>()?),
                        10 => roles = Some(map.next_value::<Vec<String>>()?),
                        11 => grant_id = Some(map.next_value::<String>()?),
                        12 => iat_ms = Some(map.next_value::<i64>()?),
                        13 => sid = Some(map.next_value::<String>()?),
                        14 => cnf = Some(map.next_value::<Confirmation>()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let missing = |name| de::Error::missing_field(name);
                Ok(Claims {
                    iss: iss.ok_or_else(|| missing("iss"))?,
                    sub: sub.ok_or_else(|| missing("sub"))?,
                    aud: aud.ok_or_else(|| missing("aud"))?,
                    exp: exp.ok_or_else(|| missing("exp"))?,
                    iat: iat.ok_or_else(|| missing("iat"))?,
                    nbf,
                    jti: jti.ok_or_else(|| missing("jti"))?,
                    client_id: client_id.ok_or_else(|| missing("client_id"))?,
                    scope: scope.unwrap_or_default(),
                    tenant,
                    roles: roles.unwrap_or_default(),
                    grant_id,
                    issued_at_ms: iat_ms,
                    sid,
                    cnf,
                    extra,
                })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Claims {
        Claims {
            iss: "https://issuer".into(),
            sub: "alice".into(),
            aud: Audience::One("api".into()),
            exp: 2_000,
            iat: 1_000,
            nbf: None,
            jti: "j1".into(),
            client_id: "web".into(),
            scope: "read write".into(),
            tenant: Some("/Org".into()),
            roles: vec!["admin".into()],
            grant_id: Some("g1".into()),
            issued_at_ms: Some(1_000_250),
            sid: Some("session-1".into()),
            cnf: Some(Confirmation::certificate(
                "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0",
            )),
            extra: Map::from_iter([("custom".to_owned(), Value::from(7))]),
        }
    }

    #[test]
    fn round_trips_with_unknown_claims() {
        let c = sample();
        let json = serde_json::to_string(&c).unwrap();
        let back: Claims = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.extra["custom"], 7);
    }

    #[test]
    fn refuses_duplicate_and_missing_claims() {
        let dup = r#"{"iss":"a","iss":"b","sub":"s","aud":"x","exp":1,"iat":1,"jti":"j","client_id":"c"}"#;
        assert!(serde_json::from_str::<Claims>(dup).is_err());
        let dup_extra = r#"{"iss":"a","sub":"s","aud":"x","exp":1,"iat":1,"jti":"j","client_id":"c","z":1,"z":2}"#;
        assert!(serde_json::from_str::<Claims>(dup_extra).is_err());
        let missing = r#"{"iss":"a","sub":"s","aud":"x","exp":1,"iat":1,"client_id":"c"}"#;
        assert!(serde_json::from_str::<Claims>(missing).is_err());
    }

    #[test]
    fn audience_array_and_fractional_dates() {
        let json =
            r#"{"iss":"a","sub":"s","aud":["x","y"],"exp":10.7,"iat":1,"jti":"j","client_id":"c"}"#;
        let c: Claims = serde_json::from_str(json).unwrap();
        assert!(c.aud.contains("y") && !c.aud.contains("z"));
        assert_eq!(c.exp, 10);
        assert_eq!(c.tenant(), "/");
        assert_eq!(c.aud.iter().collect::<Vec<_>>(), ["x", "y"]);
    }

    #[test]
    fn issued_at_is_conservative_without_millis() {
        let mut c = sample();
        assert_eq!(c.issued_at(), UnixMillis(1_000_250));
        c.issued_at_ms = None;
        assert_eq!(c.issued_at(), UnixMillis(1_000_000));
        // An iat_ms outside the iat second is not believed.
        c.issued_at_ms = Some(5_000_000);
        assert_eq!(c.issued_at(), UnixMillis(1_000_000));
    }

    #[test]
    fn new_sets_times_and_a_random_jti() {
        let c = Claims::new(
            "i",
            "s",
            Audience::One("a".into()),
            "c",
            UnixMillis(1_000_500),
            Duration::from_secs(60),
        );
        assert_eq!(
            (c.iat, c.exp, c.issued_at()),
            (1_000, 1_060, UnixMillis(1_000_500))
        );
        let other = Claims::new(
            "i",
            "s",
            Audience::One("a".into()),
            "c",
            UnixMillis(0),
            Duration::ZERO,
        );
        assert_ne!(c.jti, other.jti);
        assert_eq!(c.jti.len(), 22);
    }

    fn with_cnf(cnf: &str) -> String {
        format!(
            r#"{{"iss":"a","sub":"s","aud":"x","exp":1,"iat":1,"jti":"j","client_id":"c","cnf":{cnf}}}"#
        )
    }

    #[test]
    fn cnf_keeps_the_thumbprint_and_unknown_members() {
        let json =
            with_cnf(r#"{"x5t#S256":"ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0","jkt":"abc"}"#);
        let c: Claims = serde_json::from_str(&json).unwrap();
        let cnf = c.cnf.clone().unwrap();
        assert_eq!(
            cnf.x5t_s256.as_deref(),
            Some("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0")
        );
        assert_eq!(cnf.other["jkt"], "abc");
        assert!(c.extra.is_empty(), "cnf is not an extra claim");
        let back: Claims = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn a_malformed_cnf_does_not_deserialize() {
        for bad in [
            r#""ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0""#,
            r#"null"#,
            r#"[]"#,
            r#"{"x5t#S256":7}"#,
            r#"{"x5t#S256":""}"#,
            r#"{"x5t#S256":"ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0="}"#,
            r#"{"x5t#S256":"ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0"}"#,
            r#"{"x5t#S256":"ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0","x5t#S256":"ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"}"#,
            r#"{"jkt":"a","jkt":"b"}"#,
        ] {
            assert!(
                serde_json::from_str::<Claims>(&with_cnf(bad)).is_err(),
                "{bad}"
            );
        }
        let dup = r#"{"iss":"a","sub":"s","aud":"x","exp":1,"iat":1,"jti":"j","client_id":"c","cnf":{},"cnf":{}}"#;
        assert!(serde_json::from_str::<Claims>(dup).is_err());
    }

    #[test]
    fn scopes_and_roles() {
        let c = sample();
        assert!(c.has_scope("write") && !c.has_scope("wri"));
        assert!(c.has_role("admin"));
    }
}
