//! Target `tenant_path`: tenant path parsing and the ancestor relation cutoffs rely on.

use tollgate_core::{
    CutoffScope, RevocationEvent, RevocationIndex, TenantPath, TokenIdentity, UnixMillis,
};

/// The input (UTF-8, else ignored), split at its first `\n`, is two candidate tenant paths `a` and
/// `b`.
///
/// Panics unless: `parse` and `is_valid` agree; a parsed path prints as its input; a valid path is
/// canonical (no empty, `.` or `..` segment, allowed bytes only, at most 256 bytes); `covers` is
/// exactly "`a` is `/` or a segment-wise prefix of `b`"; and a tenant cutoff on `a` rejects a token
/// of tenant `b` exactly when `a` covers `b`.
pub fn tenant_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = text.split_once('\n').unwrap_or((text, "/"));
    for s in [a, b] {
        let parsed = TenantPath::parse(s);
        assert_eq!(parsed.is_ok(), TenantPath::is_valid(s), "{s:?}");
        assert_eq!(
            parsed.is_ok(),
            model_is_valid(s),
            "parse({s:?}) = {parsed:?}"
        );
        if let Ok(path) = parsed {
            assert_eq!(path.as_str(), s);
            assert_eq!(path.to_string(), s);
            assert!(path.covers(s), "{s:?} does not cover itself");
            assert!(TenantPath::root().covers(s));
        }
    }
    let (Ok(pa), Ok(_)) = (TenantPath::parse(a), TenantPath::parse(b)) else {
        return;
    };
    let expected = model_covers(a, b);
    assert_eq!(pa.covers(b), expected, "covers({a:?}, {b:?})");

    let index = RevocationIndex::new();
    assert!(index.apply(&RevocationEvent::Cutoff {
        scope: CutoffScope::Tenant(a.to_owned()),
        issued_before: UnixMillis(2_000),
    }));
    let token = TokenIdentity {
        jti: "j",
        grant_id: None,
        tenant: b,
        subject: "s",
        client_id: "c",
        issuer: "i",
        session: None,
        issued_at: UnixMillis(1_000),
    };
    assert_eq!(
        index.check(&token).is_err(),
        expected,
        "a cutoff on {a:?} and a token of {b:?}"
    );
}

/// The grammar, restated: `/`, or `/`-separated non-empty segments of `[A-Za-z0-9._-]`, none `.`
/// or `..`, 256 bytes at most.
fn model_is_valid(s: &str) -> bool {
    if s == "/" {
        return true;
    }
    s.len() <= 256
        && s.starts_with('/')
        && s[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

fn segments(s: &str) -> Vec<&str> {
    s.split('/').filter(|seg| !seg.is_empty()).collect()
}

/// `a` covers `b` when `a`'s segments are a prefix of `b`'s.
fn model_covers(a: &str, b: &str) -> bool {
    let (a, b) = (segments(a), segments(b));
    a.len() <= b.len() && a == b[..a.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_agrees_on_the_examples_of_the_docs() {
        assert!(model_covers("/", "/Org"));
        assert!(model_covers("/Org", "/Org/Sub"));
        assert!(!model_covers("/Org", "/Organic"));
        assert!(!model_covers("/Org/Sub", "/Org"));
        for input in [
            "/Org\n/Org/Sub",
            "/Org\n/Organic",
            "/\n/",
            "/a/../b\n/a",
            "x\ny",
        ] {
            tenant_path(input.as_bytes());
        }
    }
}
