//! Writes the seed corpora of every fuzz target into `fuzz/corpus/<target>/` (existing files with
//! the same names are replaced; files found by fuzzing are left alone):
//!
//! ```sh
//! cargo run -p tollgate-fuzz --example seed_corpora
//! ```
//!
//! Seeds are real inputs of the fixture's world: tokens signed with the fixture key and valid at
//! its instant, forms its clients and users would send.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::fs;
use tollgate_fuzz::fixture::{
    self, admin_token, claims_json, default_header, sign_raw, user_token,
};

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

fn with(claims: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut value: serde_json::Value = serde_json::from_str(claims).expect("fixture claims");
    edit(&mut value);
    value.to_string()
}

fn form(path: &str, auth: Option<&str>, body: &str) -> String {
    let auth = auth
        .map(|a| format!("Authorization: {a}\n"))
        .unwrap_or_default();
    format!("POST {path}\n{auth}Content-Type: application/x-www-form-urlencoded\n\n{body}")
}

/// `replication_wire`: a mode byte (0 entry fields, 1 an XREAD reply, 2 the snapshot hash, 3 a
/// snapshot payload), then the body; valid input of every event kind of both format versions
/// (each entry named for its version) and a few broken or future ones.
fn replication_wire_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Name, the entry's field (the format version the line needs), the line.
    let lines = [
        ("token", "1", "T 1763809200000 AbC-_09xyz"),
        ("token-spaces", "1", "T 1763809200000 a jti with spaces"),
        ("grant", "1", "G 1763809200000 family-1"),
        ("cutoff-all", "1", "C 1763805600000 *"),
        ("cutoff-tenant", "1", "C 1763805600000 tenant /Acme/Sub"),
        (
            "cutoff-subject",
            "1",
            "C 1763805600000 subject alice@example.com",
        ),
        ("cutoff-client", "1", "C -5 client web app"),
        ("cutoff-session", "2", "C 1763805600000 session sid-1"),
        (
            "issuer-all",
            "2",
            "I 1763805600000 https://id.example.com/realms/acme *",
        ),
        (
            "issuer-tenant",
            "2",
            "I 1763805600000 https://id.example.com/realms/acme tenant /Acme",
        ),
        (
            "issuer-subject",
            "2",
            "I 1763805600000 https://id.example.com/realms/acme subject 248289761001",
        ),
        (
            "issuer-client",
            "2",
            "I 1763805600000 https://id.example.com/realms/acme client web app",
        ),
        (
            "issuer-session",
            "2",
            "I 1763805600000 urn:idp session sid 1",
        ),
    ];
    let entry = |fields: &[(&str, &str)]| {
        let mut body = vec![0u8];
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                body.push(0);
            }
            body.extend_from_slice(name.as_bytes());
            body.push(0);
            body.extend_from_slice(value.as_bytes());
        }
        body
    };
    let bulk = |s: &str| format!("${}\r\n{s}\r\n", s.len());
    // RESP2: [[stream, [[id, [field, value]], ...]]]
    let xread = |entries: &[(&str, &str, &str)]| {
        let mut reply = format!(
            "\x01*1\r\n*2\r\n{}*{}\r\n",
            bulk("{tollgate}:revocations"),
            entries.len()
        );
        for (id, field, value) in entries {
            reply += &format!("*2\r\n{}*2\r\n{}{}", bulk(id), bulk(field), bulk(value));
        }
        reply.into_bytes()
    };
    let mut seeds: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for (name, field, line) in lines {
        let value = format!("1763805600123 {line}");
        seeds.push((leak(format!("entry-{name}")), entry(&[(field, &value)])));
    }
    seeds.extend([
        ("entry-no-instant", entry(&[("1", "T 1 jti")])),
        (
            "entry-future-version",
            entry(&[("3", "1763805600123 T 1 j")]),
        ),
        (
            "entry-future-kind",
            entry(&[("1", "1763805600123 X 1 whatever it is")]),
        ),
        (
            "entry-issuer-with-space",
            entry(&[("2", "1763805600123 I 1 https://a b *")]),
        ),
        (
            "entry-version-2-line-named-1",
            entry(&[("1", "1763805600123 C 1 session s")]),
        ),
        (
            "entry-two-fields",
            entry(&[("1", "1 T 1 a"), ("1", "1 T 1 b")]),
        ),
        (
            "entry-bad-tenant",
            entry(&[("1", "1 C 5 tenant not-a-path")]),
        ),
        ("entry-control-char", entry(&[("1", "1 T 5 new\u{1}line")])),
        (
            "entry-not-utf8",
            [&entry(&[("1", "1 T 5 ")])[..], b"\xff\xfe"].concat(),
        ),
        (
            "xread-every-kind",
            xread(
                &lines
                    .iter()
                    .enumerate()
                    .map(|(i, (_, field, line))| {
                        (
                            leak(format!("1763805600123-{i}")),
                            *field,
                            leak(format!("1763805600123 {line}")),
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "xread-garbage-entry",
            xread(&[("x-1", "1", "soon"), ("5-5", "1", "1 T 9 ok")]),
        ),
        (
            "xread-resp3-map",
            format!(
                "\x01%1\r\n{}*1\r\n*2\r\n{}%1\r\n{}{}",
                bulk("{tollgate}:revocations"),
                bulk("1-1"),
                bulk("1"),
                bulk("7 G 9 grant")
            )
            .into_bytes(),
        ),
        ("xread-nil", b"\x01_\r\n".to_vec()),
    ]);
    let payload: String = lines
        .iter()
        .map(|(_, _, l)| *l)
        .collect::<Vec<_>>()
        .join("\n");
    let payload_v1: String = lines
        .iter()
        .filter(|(_, field, _)| *field == "1")
        .map(|(_, _, l)| *l)
        .collect::<Vec<_>>()
        .join("\n");
    let hash = |v: &str, id: &str, events: &str| {
        [
            &[2u8][..],
            v.as_bytes(),
            b"\0",
            id.as_bytes(),
            b"\0",
            events.as_bytes(),
        ]
        .concat()
    };
    seeds.extend([
        ("snapshot-hash", hash("2", "1763805600123-7", &payload)),
        (
            "snapshot-hash-v1",
            hash("1", "1763805600123-7", &payload_v1),
        ),
        ("snapshot-hash-empty", hash("1", "0-0", "")),
        ("snapshot-hash-version-9", hash("9", "1-0", &payload)),
        ("snapshot-hash-bad-id", hash("1", "soon", &payload)),
        (
            "snapshot-hash-far-ahead",
            hash("1", "99999999999999-0", "T 4000000000000 jti-other"),
        ),
        (
            "snapshot-payload",
            [&[3u8][..], payload.as_bytes()].concat(),
        ),
        (
            "snapshot-payload-garbage-lines",
            [
                &[3u8][..],
                payload.as_bytes(),
                b"\n\xff\xfe\n\nT 12\nX 1 y\nC 1 planet mars",
            ]
            .concat(),
        ),
    ]);
    seeds
}

/// Seed names and bodies made at run time, for an example that runs once.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn main() -> std::io::Result<()> {
    let user = user_token();
    let admin = admin_token();
    let base = claims_json("user-0001", "web", "/Acme", &["customer"], "openid profile");
    let signed = |claims: &str| sign_raw(default_header().as_bytes(), claims.as_bytes());
    let revoked = signed(&with(&base, |c| c["jti"] = fixture::REVOKED_JTI.into()));
    let expired = signed(&with(&base, |c| {
        c["exp"] = (fixture::NOW.as_secs() - 3600).into()
    }));
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
        URL_SAFE_NO_PAD.encode(&base)
    );
    let hs256 = format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"HS256","typ":"at+jwt","kid":"{}"}}"#,
            fixture::KID
        )),
        URL_SAFE_NO_PAD.encode(&base)
    );
    let bearer: Vec<(&str, String)> = vec![
        ("valid-user", format!("Bearer {user}")),
        ("valid-admin", format!("bearer {admin}")),
        ("no-scheme", user.clone()),
        ("revoked", format!("Bearer {revoked}")),
        ("expired", format!("Bearer {expired}")),
        ("alg-none", format!("Bearer {alg_none}")),
        ("hs256-confusion", format!("Bearer {hs256}")),
        ("two-headers", format!("Bearer {user}\nBearer {admin}")),
        ("basic", "Basic c3ZjOnN2Yy1zZWNyZXQ=".into()),
        ("empty-bearer", "Bearer ".into()),
        ("dots", "Bearer a.b.c".into()),
    ];

    let header_nul = |header: &str, claims: &str| format!("{header}\0{claims}");
    let signed_claims: Vec<(&str, String)> = vec![
        ("valid", base.clone()),
        (
            "admin",
            claims_json("admin-sub", "web", "/", &["admin"], "openid"),
        ),
        (
            "aud-array",
            with(&base, |c| {
                c["aud"] = serde_json::json!(["other", fixture::AUDIENCE])
            }),
        ),
        (
            "aud-empty",
            with(&base, |c| c["aud"] = serde_json::json!([])),
        ),
        (
            "nbf-future",
            with(&base, |c| c["nbf"] = (fixture::NOW.as_secs() + 3600).into()),
        ),
        (
            "expired",
            with(&base, |c| c["exp"] = (fixture::NOW.as_secs() - 31).into()),
        ),
        ("iat-ms-mismatch", with(&base, |c| c["iat_ms"] = 5.into())),
        (
            "revoked-grant",
            with(&base, |c| c["grant_id"] = fixture::REVOKED_GRANT.into()),
        ),
        (
            "cut-tenant-old",
            with(&base, |c| {
                c["tenant"] = "/Cut/Team".into();
                c["iat"] = (fixture::NOW.as_secs() - 7200).into();
                c["iat_ms"] = serde_json::Value::Null;
            }),
        ),
        (
            "bad-tenant",
            with(&base, |c| c["tenant"] = "/Acme/../Globex".into()),
        ),
        (
            "duplicate-claim",
            base.replacen("{", r#"{"sub":"other","#, 1),
        ),
        (
            "typ-jwt",
            header_nul(
                &format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{}"}}"#, fixture::KID),
                &base,
            ),
        ),
        (
            "crit",
            header_nul(
                &format!(
                    r#"{{"alg":"EdDSA","typ":"application/at+jwt","kid":"{}","crit":["x"]}}"#,
                    fixture::KID
                ),
                &base,
            ),
        ),
        (
            "no-kid",
            header_nul(r#"{"alg":"EdDSA","typ":"at+jwt"}"#, &base),
        ),
    ];

    let tenant_path: Vec<(&str, String)> = vec![
        ("child", "/Org\n/Org/Sub".into()),
        ("sibling-prefix", "/Org\n/Organic".into()),
        ("root", "/\n/Acme/EU".into()),
        ("parent", "/a/b/c\n/a/b".into()),
        ("dotdot", "/a/../b\n/a".into()),
        ("trailing-slash", "/Org/\n/Org".into()),
        ("charset", "/a-b_c.d/9\n/a-b_c.d/9/x".into()),
        ("unicode", "/Ö\n/Ö/x".into()),
    ];

    let json_post = |body: &str, auth: &str| {
        format!(
            "POST /api/v2/identity/token/batch-revocation\n{auth}\nContent-Type: application/json\n\n{body}"
        )
    };
    let admin_auth = format!("Authorization: Bearer {admin}");
    let svc = basic("svc", "svc-secret");
    let web = basic("web", "web-secret");
    let token_service: Vec<(&str, String)> = vec![
        (
            "cc-basic",
            form(
                "/connect/token",
                Some(&svc),
                "grant_type=client_credentials&scope=api",
            ),
        ),
        (
            "cc-post",
            form(
                "/connect/token",
                None,
                "grant_type=client_credentials&client_id=svc&client_secret=svc-secret&access-token-lifetime=60",
            ),
        ),
        (
            "cc-both-auth",
            form(
                "/connect/token",
                Some(&svc),
                "grant_type=client_credentials&client_id=svc&client_secret=svc-secret",
            ),
        ),
        (
            "cc-bad-secret",
            form(
                "/connect/token",
                Some(&basic("svc", "nope")),
                "grant_type=client_credentials",
            ),
        ),
        (
            "cc-percent-basic",
            form(
                "/connect/token",
                Some(&basic("s%76c", "svc%2Dsecret")),
                "grant_type=client_credentials",
            ),
        ),
        (
            "password-alice",
            form(
                "/connect/token",
                Some(&web),
                "grant_type=password&username=alice&password=alice-password&tenant_path=%2FAcme&scope=openid+profile",
            ),
        ),
        (
            "password-bob-two-tenants",
            form(
                "/connect/token",
                Some(&web),
                "grant_type=password&username=bob&password=bob-password",
            ),
        ),
        (
            "password-wrong",
            form(
                "/connect/token",
                Some(&web),
                "grant_type=password&username=alice&password=x",
            ),
        ),
        (
            "refresh-unknown",
            form(
                "/connect/token",
                Some(&web),
                "grant_type=refresh_token&refresh_token=abc",
            ),
        ),
        (
            "duplicate-param",
            form(
                "/connect/token",
                Some(&svc),
                "grant_type=client_credentials&grant_type=password",
            ),
        ),
        (
            "wrong-content-type",
            format!(
                "POST /connect/token\nAuthorization: {svc}\nContent-Type: text/plain\n\ngrant_type=client_credentials"
            ),
        ),
        ("get-token", "GET /connect/token\n\n".into()),
        (
            "revoke-user-token",
            form(
                "/connect/revocation",
                Some(&web),
                &format!("token={user}&token_type_hint=access_token"),
            ),
        ),
        (
            "revoke-other-client",
            form("/connect/revocation", Some(&svc), &format!("token={user}")),
        ),
        (
            "api-revoke",
            form(
                "/api/id/v1/auth/token/revoke",
                Some(&web),
                &format!("token={user}&token_type=refresh_token"),
            ),
        ),
        (
            "api-revoke-bad-hint",
            form(
                "/api/id/v1/auth/token/revoke",
                Some(&web),
                "token=x&token_type_hint=id_token",
            ),
        ),
        (
            "introspect-gateway",
            form(
                "/connect/introspect",
                Some(&basic("gateway", "gateway-secret")),
                &format!("token={user}"),
            ),
        ),
        (
            "introspect-own",
            form("/connect/introspect", Some(&web), &format!("token={admin}")),
        ),
        ("batch-all", json_post("{}", &admin_auth)),
        (
            "batch-date",
            json_post(r#"{"creationBefore":"2025-10-01"}"#, &admin_auth),
        ),
        (
            "batch-tenant",
            json_post(
                r#"{"creationBefore":"2025-12-31T23:00:00+01:00","tenantPath":"/Acme"}"#,
                &admin_auth,
            ),
        ),
        (
            "batch-subject",
            json_post(
                r#"{"creationBefore":null,"subject":"user-0001"}"#,
                &admin_auth,
            ),
        ),
        (
            "batch-two-scopes",
            json_post(r#"{"clientId":"svc","subject":"x"}"#, &admin_auth),
        ),
        (
            "batch-future",
            json_post(r#"{"creationBefore":"2030-01-01T00:00:00Z"}"#, &admin_auth),
        ),
        (
            "batch-reference-token",
            json_post(
                r#"{"clientId":"svc"}"#,
                &format!("Reference-Token: {admin}"),
            ),
        ),
        (
            "batch-not-admin",
            json_post("{}", &format!("Authorization: Bearer {user}")),
        ),
        ("batch-null", json_post("null", &admin_auth)),
        (
            "userinfo",
            format!("GET /connect/userinfo\nAuthorization: Bearer {user}\n\n"),
        ),
        ("jwks", "GET /.well-known/jwks.json\n\n".into()),
        (
            "discovery",
            "GET /.well-known/openid-configuration\n\n".into(),
        ),
        ("unknown-path", "GET /nope\n\n".into()),
    ];

    // Bytes, not text: written on their own.
    let dir = tollgate_fuzz::corpus_dir("replication_wire");
    fs::create_dir_all(&dir)?;
    for (name, seed) in replication_wire_seeds() {
        fs::write(dir.join(format!("seed-{name}")), seed)?;
    }

    for (target, seeds) in [
        ("bearer", bearer),
        ("signed_claims", signed_claims),
        ("tenant_path", tenant_path),
        ("token_service", token_service),
    ] {
        let dir = tollgate_fuzz::corpus_dir(target);
        fs::create_dir_all(&dir)?;
        for (name, seed) in seeds {
            fs::write(dir.join(format!("seed-{name}")), seed)?;
        }
    }
    #[cfg(feature = "gateway")]
    gateway_seeds()?;
    Ok(())
}

/// The `gateway_request` and `gateway_config` seeds (`--features gateway`): raw HTTP/1.1 with
/// the harness's tokens, each attack of the gateway's findings, and configuration files.
#[cfg(feature = "gateway")]
fn gateway_seeds() -> std::io::Result<()> {
    use tollgate_fuzz::gateway_request::{alice_token, root_token};
    let alice = format!("Authorization: Bearer {}\r\n", alice_token());
    let root = format!("Authorization: Bearer {}\r\n", root_token());
    let get =
        |path: &str, headers: &str| format!("GET {path} HTTP/1.1\r\nHost: gw\r\n{headers}\r\n");
    let auth = |uri: &str, headers: &str| {
        format!(
            "GET /_auth HTTP/1.1\r\nHost: gw\r\nX-Original-Method: GET\r\nX-Original-URI: {uri}\r\n{headers}\r\n"
        )
    };
    let requests: Vec<(&str, String)> = vec![
        ("api-alice", get("/api/orders?page=2", &alice)),
        ("api-no-token", get("/api/orders", "")),
        ("api-delete", format!("DELETE /api/orders/1 HTTP/1.1\r\nHost: gw\r\n{alice}\r\n")),
        ("admin-root", get("/admin/users", &root)),
        ("admin-alice", get("/admin/users", &alice)),
        ("public", get("/public/x", "")),
        ("catch-all", get("/elsewhere", "")),
        ("connection-names-identity", get("/api/x", &format!("{alice}Connection: keep-alive, x-auth-subject, x-auth-roles\r\nX_Auth_Roles: admin\r\n"))),
        ("identity-underscores", get("/public/x", "X_Auth_Subject: root\r\nx-auth-token-id: fuzz-root\r\nX-AUTH-ROLES: admin\r\n")),
        ("upgrade-h2c", get("/public/x", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n")),
        ("upgrade-websocket", get("/ws", &format!("{alice}Connection: Upgrade\r\nUpgrade: websocket\r\n"))),
        ("upgrade-tls", get("/x", "Connection: upgrade\r\nUpgrade: TLS/1.2\r\n")),
        ("method-override", get("/api/orders/1", &format!("{alice}X-HTTP-Method-Override: DELETE\r\nX_Method_Override: DELETE\r\n"))),
        ("traversal-semicolon", get("/public/..;/admin/x", "")),
        ("traversal-encoded", get("/public/%2e%2e/api/x", "")),
        ("traversal-double", get("/public/%252e%252e/api/x", "")),
        ("traversal-overlong", get("/public/%c0%ae%c0%ae/admin", "")),
        ("traversal-fullwidth", get("/public/%ef%bc%8e%ef%bc%8e/admin", "")),
        ("traversal-iis", get("/public/%u002e%u002e/admin", "")),
        ("encoded-prefix", get("/%61pi/x", "")),
        ("forwarded-host", get("/public/x", "X-Forwarded-Host: evil\r\nX_Forwarded_Host: evil\r\n").replace("Host: gw", "Host: user@evil.example")),
        ("proxy-header", get("/public/x", "Proxy: http://evil.example\r\n")),
        ("bad-chunks", "POST /public/upload HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".into()),
        ("huge-chunk", "POST /public/upload HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nx\r\n".into()),
        ("pipelined", format!("{}{}", get("/public/a", ""), get("/api/b", &alice))),
        ("forward-auth-alice", auth("/api/x", &alice)),
        ("forward-auth-no-token", auth("/api/x", "")),
        ("forward-auth-traversal", auth("/public/..;/admin", "")),
        ("forward-auth-no-method", "GET /_auth HTTP/1.1\r\nHost: gw\r\nX-Original-URI: /api/x\r\n\r\n".into()),
    ];
    let dir = tollgate_fuzz::corpus_dir("gateway_request");
    fs::create_dir_all(&dir)?;
    for (name, seed) in requests {
        fs::write(dir.join(format!("seed-{name}")), seed)?;
    }
    let minimal = "issuer = \"https://id.example\"\naudience = [\"api\"]\n[keys]\njwks_url = \"https://id.example/jwks\"\n";
    let configs: Vec<(&str, String)> = vec![
        (
            "example.toml",
            include_str!("../../../contrib/gateway.toml").to_owned(),
        ),
        ("minimal.toml", minimal.to_owned()),
        (
            "proxy.toml",
            format!(
                "{minimal}[proxy]\nupgrades = [\"websocket\", \"h2c\"]\nmethod_override = \"judge\"\n"
            ),
        ),
        (
            "limits.toml",
            format!(
                "{minimal}[limits]\nsend_timeout = 0\ntunnel_idle_timeout = 99999999\nmax_connections = 0\n"
            ),
        ),
        (
            "routes.toml",
            format!(
                "{minimal}[[upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nprefix = \"/a;b\"\n[[routes]]\nprefix = \"/%2e\"\npublic = true\nroles = [\"x\"]\n"
            ),
        ),
        (
            "identity.toml",
            format!(
                "{minimal}[identity_headers]\nsubject = \"x_auth_client_id\"\nclient = \"x-auth-client-id\"\n"
            ),
        ),
    ];
    let dir = tollgate_fuzz::corpus_dir("gateway_config");
    fs::create_dir_all(&dir)?;
    for (name, seed) in configs {
        fs::write(dir.join(format!("seed-{name}")), seed)?;
    }
    Ok(())
}
