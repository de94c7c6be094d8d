//! What the receiver knows of its stream and its transmitter: the status a caller reads and the
//! rule `ready()` applies.

use super::error::SetError;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tollgate_core::UnixMillis;

/// How many verification states are remembered: a verification event may arrive after the
/// receiver has asked again.
const REMEMBERED_STATES: usize = 4;

/// The stream's status as the transmitter last told it (SSF 1.0 §8.1.2: a `stream-updated`
/// event, or the status endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StreamState {
    /// Not told yet (a stream the receiver just created is taken to be enabled).
    #[default]
    Unknown,
    /// The transmitter sends events.
    Enabled,
    /// The transmitter holds events back for now.
    Paused,
    /// The transmitter sends nothing and keeps nothing.
    Disabled,
}

impl StreamState {
    pub(crate) fn parse(status: &str) -> StreamState {
        match status {
            "enabled" => StreamState::Enabled,
            "paused" => StreamState::Paused,
            "disabled" => StreamState::Disabled,
            _ => StreamState::Unknown,
        }
    }
}

/// The receiver's view of its stream at one instant, from
/// [`SsfReceiver::status`](super::SsfReceiver::status). Instants are on the receiver's clock.
///
/// Non-exhaustive: more may be reported later.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SsfStatus {
    /// The stream this receiver found or created at the transmitter; `None` until then.
    pub stream_id: Option<String>,
    /// The stream's status as the transmitter last told it.
    pub stream_state: StreamState,
    /// Whether the verification event with the state this receiver asked for has arrived.
    pub verified: bool,
    /// The last poll the transmitter answered (poll delivery).
    pub last_poll: Option<UnixMillis>,
    /// The last valid SET the transmitter pushed (push delivery).
    pub last_push: Option<UnixMillis>,
    /// The last time the transmitter answered or delivered anything.
    pub last_contact: Option<UnixMillis>,
    /// The last failure talking with the transmitter, and when (never holds a secret).
    pub last_error: Option<(UnixMillis, String)>,
    /// What [`SsfReceiver::ready`](super::SsfReceiver::ready) answers.
    pub ready: bool,
}

/// How a contact with the transmitter happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contact {
    Poll,
    Push,
    Management,
}

#[derive(Debug, Default)]
struct State {
    stream_id: Option<String>,
    stream_state: StreamState,
    verified: bool,
    /// The transmitter has a verification endpoint: the stream is ready only once verified.
    verification_offered: bool,
    states: Vec<String>,
    verification_requested_at: Option<UnixMillis>,
    /// The transmitter can be checked on (polled, or its status read): silence means it is away.
    silence_applies: bool,
    critical: Vec<String>,
    last_poll: Option<UnixMillis>,
    last_push: Option<UnixMillis>,
    last_contact: Option<UnixMillis>,
    last_error: Option<(UnixMillis, String)>,
}

/// The state behind [`SsfStatus`], shared by the push service, the background task and readers.
#[derive(Debug)]
pub(crate) struct Health {
    state: Mutex<State>,
    max_silence: Duration,
}

impl Health {
    pub(crate) fn new(max_silence: Duration) -> Self {
        Health {
            state: Mutex::default(),
            max_silence,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, and each field stays consistent on its own.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stream is set up: found or created at the transmitter.
    pub(crate) fn stream_found(
        &self,
        stream_id: String,
        verification_offered: bool,
        silence_applies: bool,
        critical: Vec<String>,
    ) {
        let mut state = self.state();
        if state.stream_id.as_deref() != Some(stream_id.as_str()) {
            state.verified = false;
            state.states.clear();
            state.stream_state = StreamState::Unknown;
        }
        state.stream_id = Some(stream_id);
        state.verification_offered = verification_offered;
        state.silence_applies = silence_applies;
        state.critical = critical;
    }

    /// The stream is gone at the transmitter (it answered 404): set up again.
    pub(crate) fn stream_lost(&self) {
        let mut state = self.state();
        state.stream_id = None;
        state.verified = false;
        state.states.clear();
    }

    pub(crate) fn stream_id(&self) -> Option<String> {
        self.state().stream_id.clone()
    }

    pub(crate) fn critical(&self) -> Vec<String> {
        self.state().critical.clone()
    }

    /// Whether verification should be asked for (again) at `now`: offered, not verified, and not
    /// asked for within `every`.
    pub(crate) fn verification_due(&self, now: UnixMillis, every: Duration) -> bool {
        let state = self.state();
        state.verification_offered
            && !state.verified
            && state
                .verification_requested_at
                .is_none_or(|at| now >= at.saturating_add(every))
    }

    pub(crate) fn verification_requested(&self, state_value: String, at: UnixMillis) {
        let mut state = self.state();
        if state.states.len() == REMEMBERED_STATES {
            state.states.remove(0);
        }
        state.states.push(state_value);
        state.verification_requested_at = Some(at);
    }

    /// A verification event arrived. With a state, it must be one this receiver asked for, and
    /// verifies the stream; without one it was the transmitter's own idea and verifies nothing.
    pub(crate) fn check_verification(&self, received: Option<&str>) -> Result<(), SetError> {
        match received {
            Some(value) if !self.state().states.iter().any(|s| s == value) => {
                Err(SetError::state())
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn verified(&self) {
        self.state().verified = true;
    }

    pub(crate) fn stream_updated(&self, stream_state: StreamState) {
        self.state().stream_state = stream_state;
    }

    pub(crate) fn contact(&self, at: UnixMillis, how: Contact) {
        let mut state = self.state();
        state.last_contact = Some(at);
        match how {
            Contact::Poll => state.last_poll = Some(at),
            Contact::Push => state.last_push = Some(at),
            Contact::Management => {}
        }
    }

    pub(crate) fn error(&self, at: UnixMillis, error: String) {
        self.state().last_error = Some((at, error));
    }

    /// The readiness rule: a stream is set up, verified when the transmitter offers verification,
    /// not paused or disabled, and — where the transmitter can be checked on — it answered within
    /// the longest silence allowed.
    pub(crate) fn ready(&self, now: UnixMillis) -> bool {
        let state = self.state();
        let heard_lately = state
            .last_contact
            .is_some_and(|at| now < at.saturating_add(self.max_silence));
        state.stream_id.is_some()
            && (state.verified || !state.verification_offered)
            && !matches!(
                state.stream_state,
                StreamState::Paused | StreamState::Disabled
            )
            && (heard_lately || !state.silence_applies)
    }

    pub(crate) fn snapshot(&self, now: UnixMillis) -> SsfStatus {
        let ready = self.ready(now);
        let state = self.state();
        SsfStatus {
            stream_id: state.stream_id.clone(),
            stream_state: state.stream_state,
            verified: state.verified,
            last_poll: state.last_poll,
            last_push: state.last_push,
            last_contact: state.last_contact,
            last_error: state.last_error.clone(),
            ready,
        }
    }
}
