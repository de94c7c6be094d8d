//! RFC 8936 poll delivery: one poll at a time, acknowledging each SET only once it took effect.

use super::client::HttpClient;
use super::receiver::{Refusal, SsfReceiver};
use super::status::Contact;
use http::{StatusCode, Uri};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// What the next poll request reports back: the SETs acted on (`ack`) and those refused
/// (`setErrs`). Kept until a poll carrying them is answered, so that a failed poll loses none.
#[derive(Debug, Default)]
pub(crate) struct Reports {
    acks: Vec<String>,
    errors: Map<String, Value>,
}

/// How a poll went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Polled {
    /// Answered, every SET handled; `more` when the transmitter has more, or SETs to acknowledge.
    Done { more: bool },
    /// Answered, but some SET could not be published: it was neither acknowledged nor reported,
    /// and the transmitter will deliver it again. Back off before polling again.
    Unpublished,
    /// The transmitter no longer has the stream.
    StreamGone,
    /// The poll failed.
    Failed(String),
}

#[derive(Deserialize)]
struct PollAnswer {
    #[serde(default)]
    sets: Map<String, Value>,
    #[serde(default, rename = "moreAvailable")]
    more_available: bool,
}

/// Polls `endpoint` once (`returnImmediately`: the receiver paces its polls itself, so that no
/// request outlives its timeout waiting for events) and handles what it returns.
pub(crate) async fn poll_once(
    receiver: &SsfReceiver,
    client: &HttpClient,
    endpoint: &Uri,
    max_events: u32,
    reports: &mut Reports,
) -> Polled {
    let request = json!({
        "ack": reports.acks,
        "setErrs": reports.errors,
        "maxEvents": max_events,
        "returnImmediately": true,
    });
    let answer = match client.post(endpoint, &request).await {
        Ok(answer) => answer,
        Err(e) => return Polled::Failed(format!("poll: {e}")),
    };
    if answer.status == StatusCode::NOT_FOUND {
        return Polled::StreamGone;
    }
    if answer.status != StatusCode::OK {
        return Polled::Failed(format!("poll: the transmitter answered {}", answer.status));
    }
    let answer: PollAnswer = match answer.json("the poll answer") {
        Ok(answer) => answer,
        Err(e) => return Polled::Failed(format!("poll: {e}")),
    };
    // The transmitter has this poll's acknowledgements and errors.
    *reports = Reports::default();
    let inner = &receiver.inner;
    inner.health.contact(inner.clock.now(), Contact::Poll);
    let delivered = !answer.sets.is_empty();
    let mut unpublished = false;
    for (jti, set) in answer.sets {
        let Some(set) = set.as_str() else {
            reports.errors.insert(
                jti,
                json!({ "err": "invalid_request", "description": "the SET is not a string" }),
            );
            continue;
        };
        match receiver.receive(set, Contact::Poll).await {
            Ok(_) => reports.acks.push(jti),
            Err(Refusal::Invalid(error)) => {
                reports.errors.insert(
                    jti,
                    json!({ "err": error.err(), "description": error.description() }),
                );
            }
            Err(Refusal::Unavailable(_)) => unpublished = true,
        }
    }
    if unpublished {
        Polled::Unpublished
    } else {
        Polled::Done {
            more: answer.more_available || delivered,
        }
    }
}
