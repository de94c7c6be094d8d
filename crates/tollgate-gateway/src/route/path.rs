//! The path a request is routed by, and the paths refused because an upstream could read them
//! as another.
//!
//! A route is judged on the path as the gateway reads it, and the upstream acts on the path as
//! it reads it. Wherever the two could differ, a request under a public prefix here could name a
//! protected resource there. So a path is refused (400) when any common upstream (Tomcat, Jetty,
//! Spring, IIS, Express, WSGI servers) could normalise it into a different one:
//!
//! * a `.` or `..` segment, also percent-encoded (`%2e`), as an overlong UTF-8 sequence
//!   (`%c0%ae`: refused as invalid UTF-8), as IIS's `%u002e`, or as a Unicode character that
//!   compatibility normalisation (NFKC) or Windows' best-fit mapping turns into a dot, slash or
//!   backslash (full-width `．`, `／`, `＼`, one-dot leader `․`, ...); and a segment of only dots
//!   and spaces (`...`, `.. `), which Windows trims to a dot segment;
//! * `;` anywhere, also `%3b`: Tomcat, Jetty and Spring drop path parameters, so `/api;x/admin`
//!   is `/api/admin` to them (`..;` walks up a level);
//! * an encoded `/` or `\`, a raw `\`, and an empty segment (`//`);
//! * `%25` (an encoded `%`: a second decoding would turn `%252e` into `.`), a `%` not followed
//!   by two hex digits, and an encoded NUL or other control character (`%00` ends the path for
//!   some servers and file systems).
//!
//! What is left is routed after percent-decoding, so `/%61pi` is under `/api`, as the upstream
//! will see it.

use std::borrow::Cow;
use unicode_normalization::UnicodeNormalization;

/// The percent-decoded path routes are matched against, or `None` when the path is refused.
pub(crate) fn routable(path: &str) -> Option<Cow<'_, str>> {
    if !path.starts_with('/') || path.contains(['\\', ';']) || path.contains("//") {
        return None;
    }
    let decoded = if path.contains('%') {
        Cow::Owned(decode(path)?)
    } else {
        Cow::Borrowed(path)
    };
    let safe = decoded
        .split('/')
        .all(|segment| !segment.chars().all(|c| c == '.' || c == ' ') || segment.is_empty())
        && decoded
            .chars()
            .all(|c| c.is_ascii() || !folds_into_syntax(c));
    // The leading `/` makes the first segment empty; any other empty segment was refused above.
    safe.then_some(decoded)
}

/// Decodes every `%XX` escape, refusing the escapes no upstream should be asked to decode (see
/// the module's list), and what does not decode into UTF-8.
fn decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = |b: u8| char::from(b).to_digit(16);
        let high = hex(*bytes.get(i + 1)?)?;
        let low = hex(*bytes.get(i + 2)?)?;
        let byte = u8::try_from(high * 16 + low).ok()?;
        if byte.is_ascii_control() || b"./\\;%".contains(&byte) {
            return None;
        }
        out.push(byte);
        i += 3;
    }
    String::from_utf8(out).ok()
}

/// Whether an upstream could turn `c` into path syntax: a dot, a slash, a backslash, a `;` or
/// a `%`, by Unicode compatibility normalisation (NFKC, what Java's and .NET's normalisers and
/// many frameworks apply), or by Windows' best-fit mapping for characters NFKC leaves alone.
fn folds_into_syntax(c: char) -> bool {
    // Best-fit mappings (IIS, Windows file APIs) outside NFKC: slashes, and the yen and won
    // signs, which code pages 932 and 949 map to `\`.
    const BEST_FIT: [char; 8] = [
        '\u{2215}', '\u{2044}', '\u{29f5}', '\u{29f8}', '\u{2216}', '\u{29f9}', '\u{00a5}',
        '\u{20a9}',
    ];
    BEST_FIT.contains(&c)
        || c.is_control()
        || std::iter::once(c)
            .nfkc()
            .any(|n| matches!(n, '.' | '/' | '\\' | ';' | '%'))
}

#[cfg(test)]
mod tests {
    use super::routable;

    #[test]
    fn ordinary_paths_route_decoded() {
        for (path, routed) in [
            ("/", "/"),
            ("/api/orders", "/api/orders"),
            ("/a.b/c..d", "/a.b/c..d"),
            ("/x%20y", "/x y"),
            ("/%61pi/orders", "/api/orders"),
            ("/caf%C3%A9", "/café"),
            ("/api/", "/api/"),
        ] {
            assert_eq!(routable(path).as_deref(), Some(routed), "{path}");
        }
    }

    #[test]
    fn paths_an_upstream_could_read_differently_are_refused() {
        for path in [
            "relative",
            "/public/../admin",
            "/./admin",
            "/..",
            "/public/%2e%2e/admin",
            "/public/%2E./admin",
            "/public/..;/admin",
            "/public/.;/admin",
            "/public/..%3b/admin",
            "/api;jsessionid=1/admin",
            "/public/%00/admin",
            "/public/admin%00.html",
            "/public/%c0%ae%c0%ae/admin",
            "/public/%e0%80%ae%e0%80%ae/admin",
            "/public/%u002e%u002e/admin",
            "/public/%ef%bc%8e%ef%bc%8e/admin",
            "/public/\u{ff0e}\u{ff0e}/admin",
            "/public/%e2%80%a4%e2%80%a4/admin",
            "/public/%ef%bc%8fadmin",
            "/public/%e2%88%95admin",
            "/public/%c2%a5admin",
            "/public/%e2%82%a9admin",
            "/public/.../admin",
            "/public/..%20/admin",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "//admin",
            "/a//b",
            "/%252e%252e/admin",
            "/bad%zz",
            "/bad%2",
            "/bad%",
            "/%0a",
            "/%ff",
        ] {
            assert_eq!(routable(path), None, "{path}");
        }
    }
}
