//! Certificate-bound tokens (RFC 8705 §3): whether a verified token may be used on a request,
//! given the client certificate the request came with.
//!
//! Run by [`ValidateBearer`](crate::ValidateBearer) after the signature, claims and revocation
//! checks, so the gateway and every app judge bindings alike.

use crate::verifier::TokenError;
use tollgate_core::{Claims, ClientCertificate};

/// Which tokens the layer accepts, by binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Binding {
    /// Unbound tokens, and bound tokens on a request with their certificate.
    #[default]
    AsIssued,
    /// Only tokens bound to the request's certificate.
    Required,
}

/// Whether `claims` may be used on a request with these extensions, where the client
/// certificate is a [`ClientCertificate`].
///
/// A token without `cnf` is unbound: accepted unless `binding` is [`Binding::Required`]. A
/// token with `cnf.x5t#S256` is accepted only with the certificate of that thumbprint (compared
/// in constant time). A `cnf` with any other member, or with none, asks for a proof this layer
/// does not check, so the token is refused: accepting it would turn a sender-constrained token
/// into a bearer token. (A malformed `cnf` never gets here: the claims do not deserialize.)
///
/// The unbound path reads one `Option`, looks nothing up and allocates nothing.
pub(crate) fn check(
    claims: &Claims,
    extensions: &http::Extensions,
    binding: Binding,
) -> Result<(), TokenError> {
    let Some(cnf) = &claims.cnf else {
        return match binding {
            Binding::AsIssued => Ok(()),
            Binding::Required => Err(TokenError::Unbound),
        };
    };
    let Some(x5t) = cnf.x5t_s256.as_deref() else {
        return Err(TokenError::UnsupportedConfirmation);
    };
    if !cnf.other.is_empty() {
        return Err(TokenError::UnsupportedConfirmation);
    }
    match extensions.get::<ClientCertificate>() {
        None => Err(TokenError::CertificateRequired),
        Some(certificate) if certificate.matches(x5t) => Ok(()),
        Some(_) => Err(TokenError::CertificateMismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tollgate_core::{Audience, Confirmation, UnixMillis};

    fn with(certificate: Option<&ClientCertificate>) -> http::Extensions {
        let mut extensions = http::Extensions::new();
        if let Some(certificate) = certificate {
            extensions.insert(certificate.clone());
        }
        extensions
    }

    fn claims(cnf: Option<Confirmation>) -> Claims {
        let mut c = Claims::new(
            "i",
            "s",
            Audience::One("a".into()),
            "c",
            UnixMillis(0),
            Duration::ZERO,
        );
        c.cnf = cnf;
        c
    }

    #[test]
    fn bound_tokens_need_their_certificate() {
        let mine = ClientCertificate::from_der(b"mine".to_vec());
        let other = ClientCertificate::from_der(b"other".to_vec());
        let bound = claims(Some(Confirmation::certificate(mine.x5t_s256())));
        assert_eq!(check(&bound, &with(Some(&mine)), Binding::AsIssued), Ok(()));
        assert_eq!(check(&bound, &with(Some(&mine)), Binding::Required), Ok(()));
        assert_eq!(
            check(&bound, &with(Some(&other)), Binding::AsIssued),
            Err(TokenError::CertificateMismatch)
        );
        assert_eq!(
            check(&bound, &with(None), Binding::AsIssued),
            Err(TokenError::CertificateRequired)
        );
    }

    #[test]
    fn unbound_tokens_pass_unless_binding_is_required() {
        let mine = ClientCertificate::from_der(b"mine".to_vec());
        let unbound = claims(None);
        assert_eq!(check(&unbound, &with(None), Binding::AsIssued), Ok(()));
        assert_eq!(
            check(&unbound, &with(Some(&mine)), Binding::AsIssued),
            Ok(())
        );
        assert_eq!(
            check(&unbound, &with(Some(&mine)), Binding::Required),
            Err(TokenError::Unbound)
        );
    }

    #[test]
    fn confirmations_it_cannot_check_are_refused() {
        let mine = ClientCertificate::from_der(b"mine".to_vec());
        let mut dpop = Confirmation::default();
        dpop.other.insert("jkt".into(), "abc".into());
        let mut both = Confirmation::certificate(mine.x5t_s256());
        both.other.insert("jkt".into(), "abc".into());
        for cnf in [Confirmation::default(), dpop, both] {
            assert_eq!(
                check(&claims(Some(cnf)), &with(Some(&mine)), Binding::AsIssued),
                Err(TokenError::UnsupportedConfirmation)
            );
        }
    }
}
