//! [`SignInThrottle`]: which keys failed password sign-ins are counted against, the operator's
//! choice of whom a guesser can slow down.

use super::throttle::{CEILING, POLICY};
use crate::store::ThrottlePolicy;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Which keys failed sign-ins (the password grant) are counted against.
///
/// A throttled attempt is refused *before* its password is verified (answering the right
/// password would make the throttle an oracle), so whoever can make failed attempts for a key
/// can keep that key waiting. Anyone holding a password-grant client's credentials can make
/// them, for any username: the policy decides whether they delay the user everywhere or only
/// from where they are.
///
/// The address is the [`PeerAddr`](crate::PeerAddr) in the request's extensions, which
/// `tollgate serve` takes from the connection (never from a header the client sends); an IPv6
/// address counts as its /64, the block one host usually holds. A request without one is
/// counted per username under every policy, as [`Username`](SignInThrottle::Username).
///
/// Every key allows five failures, then waits 1 s, doubling up to 5 minutes; a success or 15
/// quiet minutes clear it. With a shared store (replicas on PostgreSQL) each key is counted in
/// the database, so the policy holds across replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SignInThrottle {
    /// Per username. Failures from anywhere delay the user everywhere: the tightest bound on
    /// guesses from many addresses, and the easiest lock-out (five wrong passwords, then one
    /// every few minutes, keep the user waiting).
    Username,
    /// Per username and address. A guesser delays only its own address, and the user signs in
    /// from another; nothing bounds guesses per user across addresses, so use it only where
    /// guessers cannot have many addresses.
    UsernameAndAddress,
    /// Both (the default): per username and address as above, plus a per-username ceiling that
    /// counts failures from every address and trips only after twenty (four times the free
    /// failures), with the same waits. A guesser from one address trips its own key long before
    /// the ceiling, and each further guess waits minutes, so delaying the user elsewhere takes
    /// it well over half an hour of guessing, and a success clears the ceiling again; guesses
    /// from many addresses are still bounded per user, in the long run as tightly as
    /// [`Username`](SignInThrottle::Username) bounds them.
    #[default]
    Both,
}

impl SignInThrottle {
    /// Every value, for error messages.
    pub const NAMES: &'static str = "username, username_and_address, both";

    /// The name of the policy in a configuration file: `username`, `username_and_address` or
    /// `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignInThrottle::Username => "username",
            SignInThrottle::UsernameAndAddress => "username_and_address",
            SignInThrottle::Both => "both",
        }
    }

    /// The keys an attempt for `username` from `peer` is counted against, in the order they are
    /// taken: the per-address key first, so that an attempt its own address refuses is not
    /// counted against the user's ceiling.
    ///
    /// Each kind of key has a prefix ending in a space, and an address never holds a space, so
    /// no username can spell another kind's key (a shared store keeps them all in one table).
    pub(crate) fn keys(
        self,
        username: &str,
        peer: Option<IpAddr>,
    ) -> Vec<(String, ThrottlePolicy)> {
        let user = |policy| (format!("user {username}"), policy);
        match (self, peer) {
            (SignInThrottle::Username, _) | (_, None) => vec![user(POLICY)],
            (SignInThrottle::UsernameAndAddress, Some(ip)) => {
                vec![(address_key(ip, username), POLICY)]
            }
            (SignInThrottle::Both, Some(ip)) => {
                vec![(address_key(ip, username), POLICY), user(CEILING)]
            }
        }
    }
}

/// `address <network> <username>`: an IPv4 address as it is, an IPv6 one as its /64 (an
/// IPv4-mapped IPv6 address as the IPv4 address it maps).
fn address_key(ip: IpAddr, username: &str) -> String {
    match ip {
        IpAddr::V4(v4) => format!("address {v4} {username}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("address {v4} {username}"),
            None => {
                let s = v6.segments();
                format!(
                    "address {:x}:{:x}:{:x}:{:x}::/64 {username}",
                    s[0], s[1], s[2], s[3]
                )
            }
        },
    }
}

impl fmt::Display for SignInThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`SignInThrottle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSignInThrottle(String);

impl fmt::Display for UnknownSignInThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown sign-in throttle `{}` ({})",
            self.0,
            SignInThrottle::NAMES
        )
    }
}

impl std::error::Error for UnknownSignInThrottle {}

impl FromStr for SignInThrottle {
    type Err = UnknownSignInThrottle;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "username" => Ok(SignInThrottle::Username),
            "username_and_address" => Ok(SignInThrottle::UsernameAndAddress),
            "both" => Ok(SignInThrottle::Both),
            other => Err(UnknownSignInThrottle(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_by_policy_and_address() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let keys = |policy: SignInThrottle, peer| -> Vec<String> {
            policy
                .keys("alice", peer)
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(keys(SignInThrottle::Username, Some(v4)), ["user alice"]);
        assert_eq!(
            keys(SignInThrottle::UsernameAndAddress, Some(v4)),
            ["address 192.0.2.7 alice"]
        );
        assert_eq!(
            keys(SignInThrottle::Both, Some(v4)),
            ["address 192.0.2.7 alice", "user alice"]
        );
        assert_eq!(SignInThrottle::Both.keys("alice", Some(v4))[1].1, CEILING);
        // Without an address, every policy counts per username, as it always did.
        for policy in [
            SignInThrottle::Username,
            SignInThrottle::UsernameAndAddress,
            SignInThrottle::Both,
        ] {
            assert_eq!(policy.keys("alice", None), [("user alice".into(), POLICY)]);
        }
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let key = |ip: &str| address_key(ip.parse().unwrap(), "bob");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_eq!(key("2001:db8:1:2::1"), "address 2001:db8:1:2::/64 bob");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
    }

    #[test]
    fn names_round_trip_and_a_bad_one_lists_them() {
        for policy in [
            SignInThrottle::Username,
            SignInThrottle::UsernameAndAddress,
            SignInThrottle::Both,
        ] {
            assert_eq!(policy.as_str().parse::<SignInThrottle>(), Ok(policy));
        }
        let err = "per_ip".parse::<SignInThrottle>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown sign-in throttle `per_ip` (username, username_and_address, both)"
        );
        assert_eq!(SignInThrottle::default(), SignInThrottle::Both);
    }
}
