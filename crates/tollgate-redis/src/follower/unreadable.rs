//! What a follower does with a stream entry it cannot read: an unknown format version, an
//! unknown kind of event, a malformed value. Such an entry was written by a newer tollgate (a
//! kind of revocation this follower does not know) or not by tollgate at all; skipping it could
//! accept a token it revoked, so by default the follower stops at it, and says so.

use crate::wire::StreamId;
use std::fmt;
use std::str::FromStr;

/// A follower's policy for a stream entry it cannot read, set with
/// [`Follower::on_unreadable`](crate::Follower::on_unreadable) (`on_unreadable` in the
/// gateway's `[revocations]` and `tollgate serve`'s `[replication]` tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnreadable {
    /// Stops at the entry, without applying it or anything after it, until it can be read (the
    /// default): the follower is not ready ([`FeedStatus::refused`](crate::FeedStatus::refused)
    /// names the entry, under every [`HealthPolicy`](crate::HealthPolicy) but
    /// [`always_serve`](crate::HealthPolicy::always_serve)), logs it once, and reads again from
    /// the same position every second. Upgrading the follower is the way on.
    #[default]
    Refuse,
    /// Skips the entry (counted in [`FeedStatus::skipped`](crate::FeedStatus::skipped), and
    /// logged) and goes on with the next one: whatever it revoked is not enforced here.
    Skip,
}

impl OnUnreadable {
    /// Its name in configuration files: `refuse` or `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnreadable::Refuse => "refuse",
            OnUnreadable::Skip => "skip",
        }
    }
}

impl fmt::Display for OnUnreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not `refuse` or `skip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPolicy;

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("must be \"refuse\" or \"skip\"")
    }
}

impl std::error::Error for UnknownPolicy {}

impl FromStr for OnUnreadable {
    type Err = UnknownPolicy;

    /// `refuse` or `skip`, as written in configuration files.
    fn from_str(name: &str) -> Result<Self, UnknownPolicy> {
        match name {
            "refuse" => Ok(OnUnreadable::Refuse),
            "skip" => Ok(OnUnreadable::Skip),
            _ => Err(UnknownPolicy),
        }
    }
}

/// Why a follower under [`OnUnreadable::Refuse`] stopped: the entry (by id, or as the one after
/// the last applied when Redis gave none) and what is wrong with it. Its text is what
/// [`FeedStatus::refused`](crate::FeedStatus::refused) and the log say.
pub(crate) fn refusal(id: Option<StreamId>, after: StreamId, why: &str) -> String {
    let entry = match id {
        Some(id) => format!("stream entry {id}"),
        None => format!("a stream entry after {after} (without an id)"),
    };
    format!(
        "cannot read {entry} ({why}): written by a newer tollgate or not by tollgate: upgrade \
         this follower, or set on_unreadable = skip"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_written() {
        for policy in [OnUnreadable::Refuse, OnUnreadable::Skip] {
            assert_eq!(policy.as_str().parse(), Ok(policy));
        }
        assert_eq!(OnUnreadable::default(), OnUnreadable::Refuse);
        assert_eq!("Skip".parse::<OnUnreadable>(), Err(UnknownPolicy));
        assert_eq!("".parse::<OnUnreadable>(), Err(UnknownPolicy));
    }

    #[test]
    fn a_refusal_names_the_entry_and_the_way_on() {
        let id = StreamId { ms: 17, seq: 2 };
        assert_eq!(
            refusal(Some(id), StreamId::ZERO, "unknown format version"),
            "cannot read stream entry 17-2 (unknown format version): written by a newer \
             tollgate or not by tollgate: upgrade this follower, or set on_unreadable = skip"
        );
        assert!(refusal(None, id, "no id").starts_with("cannot read a stream entry after 17-2"));
    }
}
