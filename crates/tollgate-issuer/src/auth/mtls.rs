//! Mutual-TLS client authentication (RFC 8705 §2): whether the client certificate a request came
//! with is the one a client registered.
//!
//! * `tls_client_auth` (§2.1): a certificate the listener verified against its client CA, with
//!   the registered subject DN or subject alternative name (parsed with `x509-parser`).
//! * `self_signed_tls_client_auth` (§2.2): a certificate whose SHA-256 thumbprint is one of the
//!   registered ones (compared in constant time).

use crate::directory::{CertificateName, ClientAuthentication};
use std::fmt;
use std::net::IpAddr;
use tollgate_core::ClientCertificate;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Whether `certificate` authenticates a client registered with `authentication`. Secret clients
/// are never authenticated here.
pub(crate) fn authenticates(
    authentication: &ClientAuthentication,
    certificate: Option<&ClientCertificate>,
) -> bool {
    let Some(certificate) = certificate else {
        return false;
    };
    match authentication {
        ClientAuthentication::Secret => false,
        ClientAuthentication::SelfSignedTlsClientAuth(thumbprints) => {
            // Every registered certificate is compared, so the time taken does not say which.
            thumbprints
                .iter()
                .fold(false, |found, t| certificate.matches(t) | found)
        }
        // A subject or alternative name is only as good as the CA that signed it: a certificate
        // the listener accepted without one (self-signed) names whatever its maker wished.
        ClientAuthentication::TlsClientAuth(name) => {
            certificate.is_verified_by_ca() && carries(certificate.der(), name)
        }
    }
}

/// Whether the DER certificate carries `name`.
fn carries(der: &[u8], name: &CertificateName) -> bool {
    let Ok((_, certificate)) = X509Certificate::from_der(der) else {
        return false;
    };
    if let CertificateName::SubjectDn(expected) = name {
        return SubjectDn::of(&certificate).is_some_and(|dn| dn == *expected);
    }
    // An absent, malformed or duplicated extension names nothing.
    let Ok(Some(san)) = certificate.subject_alternative_name() else {
        return false;
    };
    san.value
        .general_names
        .iter()
        .any(|general| match (general, name) {
            (GeneralName::DNSName(dns), CertificateName::SanDns(want)) => {
                dns.eq_ignore_ascii_case(want)
            }
            (GeneralName::URI(uri), CertificateName::SanUri(want)) => uri == want,
            (GeneralName::RFC822Name(email), CertificateName::SanEmail(want)) => email == want,
            (GeneralName::IPAddress(bytes), CertificateName::SanIp(want)) => {
                ip_from(bytes) == Some(*want)
            }
            _ => false,
        })
}

fn ip_from(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The attribute types RFC 4514 §3 names by a short name; any other is written as its dotted
/// OID.
const SHORT_NAMES: [(&str, &str); 9] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// A distinguished name as RFC 4514 writes it (`CN=svc,O=Example,C=SE`): the most specific
/// attribute first. Attribute types are compared by name (`cn` = `CN` = `2.5.4.3`) and values
/// without ASCII case (X.520's `caseIgnoreMatch`, which the common attributes use).
///
/// Multi-valued RDNs (`+`) are read as successive attributes.
#[derive(Debug, Clone, Eq)]
pub struct SubjectDn(Vec<(String, String)>);

/// A `tls_client_auth_subject_dn` that is not an RFC 4514 string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSubjectDn(String);

impl fmt::Display for InvalidSubjectDn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not an RFC 4514 distinguished name (such as `CN=svc,O=Example,C=SE`): {}",
            self.0
        )
    }
}

impl std::error::Error for InvalidSubjectDn {}

impl PartialEq for SubjectDn {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((t1, v1), (t2, v2))| t1 == t2 && v1.eq_ignore_ascii_case(v2))
    }
}

impl fmt::Display for SubjectDn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (t, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}=")?;
            for (j, c) in v.chars().enumerate() {
                let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=')
                    || (j == 0 && matches!(c, ' ' | '#'))
                    || (j + 1 == v.chars().count() && c == ' ');
                if special {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

fn type_name(t: &str) -> String {
    let t = t.trim();
    SHORT_NAMES
        .iter()
        .find(|(oid, short)| t == *oid || t.eq_ignore_ascii_case(short))
        .map_or_else(|| t.to_ascii_uppercase(), |(_, short)| (*short).to_owned())
}

impl SubjectDn {
    /// Parses an RFC 4514 string: `type=value` pairs separated by `,` (or `+`), with `\`
    /// escaping special characters (`\,`) or giving a byte in hex (`\2C`).
    pub fn parse(text: &str) -> Result<Self, InvalidSubjectDn> {
        let invalid = || InvalidSubjectDn(text.to_owned());
        let mut attributes = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            let mut name = String::new();
            for c in chars.by_ref() {
                if c == '=' {
                    break;
                }
                name.push(c);
            }
            let name = type_name(&name);
            let valid_name = !name.is_empty()
                && (name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    || name.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
            if !valid_name {
                return Err(invalid());
            }
            let mut value: Vec<u8> = Vec::new();
            // Where trailing unescaped spaces start, to trim them.
            let mut escaped_len = 0;
            let mut ended = true;
            while let Some(c) = chars.next() {
                match c {
                    ',' | '+' => {
                        ended = false;
                        break;
                    }
                    '\\' => {
                        let next = chars.next().ok_or_else(invalid)?;
                        if next.is_ascii_hexdigit() {
                            let low = chars.next().filter(char::is_ascii_hexdigit);
                            let low = low.ok_or_else(invalid)?;
                            let byte = u8::from_str_radix(&format!("{next}{low}"), 16)
                                .map_err(|_| invalid())?;
                            value.push(byte);
                        } else {
                            let mut buf = [0; 4];
                            value.extend_from_slice(next.encode_utf8(&mut buf).as_bytes());
                        }
                        escaped_len = value.len();
                    }
                    '"' | ';' | '<' | '>' | '=' => return Err(invalid()),
                    // Spaces before the value (after `=`) are not part of it (RFC 4514 §3
                    // allows none; tolerated for hand-written configuration).
                    ' ' if value.is_empty() => {}
                    c => {
                        let mut buf = [0; 4];
                        value.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
            let value = String::from_utf8(value).map_err(|_| invalid())?;
            // Unescaped spaces at the end go too; an escaped one (`\ `) stays.
            let keep = value.trim_end_matches(' ').len().max(escaped_len);
            let value = value[..keep].to_owned();
            if value.is_empty() {
                return Err(invalid());
            }
            attributes.push((name, value));
            if ended {
                break;
            }
        }
        Ok(SubjectDn(attributes))
    }

    /// The subject of `certificate`, most specific attribute first; `None` when an attribute's
    /// value is not a string.
    fn of(certificate: &X509Certificate<'_>) -> Option<SubjectDn> {
        let mut attributes = Vec::new();
        // DER lists the RDNs from the root (C=...) down; RFC 4514 writes them the other way.
        let rdns: Vec<_> = certificate.subject().iter().collect();
        for rdn in rdns.into_iter().rev() {
            for attribute in rdn.iter() {
                let oid = attribute.attr_type().to_id_string();
                let value = attribute.as_str().ok()?;
                attributes.push((type_name(&oid), value.to_owned()));
            }
        }
        Some(SubjectDn(attributes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_dns_parse_as_rfc_4514_writes_them() {
        let dn = SubjectDn::parse("CN=svc, o=Example\\, Inc.,2.5.4.6=SE").unwrap();
        assert_eq!(
            dn.0,
            [
                ("CN".to_owned(), "svc".to_owned()),
                ("O".to_owned(), "Example, Inc.".to_owned()),
                ("C".to_owned(), "SE".to_owned()),
            ]
        );
        assert_eq!(dn.to_string(), "CN=svc,O=Example\\, Inc.,C=SE");
        assert_eq!(
            dn,
            SubjectDn::parse("cn=SVC,O=example\\2C inc.,c=se").unwrap()
        );
        assert_ne!(dn, SubjectDn::parse("CN=svc,O=Example\\, Inc.").unwrap());
        assert_eq!(
            SubjectDn::parse("CN=a\\ ").unwrap().0[0].1,
            "a ",
            "an escaped trailing space stays"
        );
        for value in [" a", "a ", "#a", "a,b+c\"d<e>f;g=h\\i", " "] {
            let dn = SubjectDn(vec![("CN".to_owned(), value.to_owned())]);
            assert_eq!(
                SubjectDn::parse(&dn.to_string()).unwrap().0,
                dn.0,
                "{value:?}"
            );
        }
        for bad in [
            "", "CN", "CN=", "=x", "CN=a,", "CN=a;O=b", "C N=x", "CN=\\", "CN=\\4",
        ] {
            assert!(SubjectDn::parse(bad).is_err(), "{bad}");
        }
    }
}
