//! Tenant paths (`/`, `/Org`, `/Org/Sub`): the hierarchy tenant cutoffs apply to.

use std::fmt;

/// A validated tenant path: `/` (the root) or `/`-separated non-empty segments with no trailing
/// slash, e.g. `/Org/Sub`. A cutoff on `/Org` covers `/Org` and `/Org/Sub`, never `/Organic`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantPath(String);

/// Why a string is not a tenant path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPathError {
    reason: &'static str,
}

impl fmt::Display for TenantPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed tenant path: {}", self.reason)
    }
}

impl std::error::Error for TenantPathError {}

/// Longest accepted tenant path, in bytes.
const MAX_LEN: usize = 256;

impl TenantPath {
    /// The root tenant, `/`.
    pub fn root() -> Self {
        TenantPath("/".to_owned())
    }

    /// Parses and validates a tenant path.
    ///
    /// Segments may contain ASCII letters, digits, `-`, `_` and `.`; anything else (spaces,
    /// `//`, a trailing `/`, `..`) is refused so that two spellings never name one tenant.
    pub fn parse(s: &str) -> Result<Self, TenantPathError> {
        check(s)?;
        Ok(TenantPath(s.to_owned()))
    }

    /// Whether `s` is a valid tenant path, without allocating.
    pub fn is_valid(s: &str) -> bool {
        check(s).is_ok()
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `self` is `other` or one of its ancestors.
    pub fn covers(&self, other: &str) -> bool {
        covers(&self.0, other)
    }
}

fn check(s: &str) -> Result<(), TenantPathError> {
    let err = |reason| Err(TenantPathError { reason });
    if s == "/" {
        return Ok(());
    }
    if s.len() > MAX_LEN {
        return err("longer than 256 bytes");
    }
    let Some(rest) = s.strip_prefix('/') else {
        return err("must start with '/'");
    };
    for segment in rest.split('/') {
        if segment.is_empty() {
            return err("empty segment");
        }
        if segment == "." || segment == ".." {
            return err("'.' and '..' are not segments");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return err("segments may hold only letters, digits, '-', '_' and '.'");
        }
    }
    Ok(())
}

/// Whether tenant `ancestor` is `tenant` itself or one of its parents (`/` covers everything).
pub(crate) fn covers(ancestor: &str, tenant: &str) -> bool {
    ancestor == "/"
        || tenant == ancestor
        || (tenant.starts_with(ancestor) && tenant.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

/// Calls `f` with the tenant itself and each of its ancestors, root (`/`) first.
pub(crate) fn for_each_ancestor(tenant: &str, mut f: impl FnMut(&str) -> bool) -> bool {
    if f("/") {
        return true;
    }
    if tenant == "/" || tenant.is_empty() {
        return false;
    }
    for (i, b) in tenant.bytes().enumerate().skip(1) {
        if b == b'/' && f(&tenant[..i]) {
            return true;
        }
    }
    f(tenant)
}

impl fmt::Display for TenantPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TenantPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_paths() {
        for ok in ["/", "/Org", "/Org/Sub", "/a-b_c.d/9"] {
            assert_eq!(TenantPath::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_malformed_paths() {
        for bad in [
            "",
            "Org",
            "/Org/",
            "//",
            "/Org//Sub",
            "/ Org",
            "/../x",
            "/Org/.",
            "/Ö",
        ] {
            assert!(TenantPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(TenantPath::parse(&format!("/{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn covers_is_segment_aware() {
        assert!(covers("/", "/Org"));
        assert!(covers("/Org", "/Org"));
        assert!(covers("/Org", "/Org/Sub"));
        assert!(!covers("/Org", "/Organic"));
        assert!(!covers("/Org/Sub", "/Org"));
    }

    #[test]
    fn ancestors_root_first() {
        let mut seen = Vec::new();
        for_each_ancestor("/Org/Sub/Team", |t| {
            seen.push(t.to_owned());
            false
        });
        assert_eq!(seen, ["/", "/Org", "/Org/Sub", "/Org/Sub/Team"]);
    }
}
