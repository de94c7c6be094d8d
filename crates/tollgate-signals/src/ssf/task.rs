//! The receiver's background task: set the stream up, ask for verification, then follow the
//! stream (poll it, or read its status) until the task is dropped.

use super::poll::{self, Polled, Reports};
use super::receiver::SsfReceiver;
use super::set::TransmitterKeys;
use super::status::Contact;
use super::transmitter::{self, Endpoints, WantedDelivery};
use http::Uri;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;
use tollgate_layer::RemoteJwks;

/// The running background task of an [`SsfReceiver`] ([`SsfReceiver::start`]): it stops when
/// this handle is dropped.
#[derive(Debug)]
pub struct SsfTask {
    task: AbortHandle,
}

impl Drop for SsfTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn spawn(runtime: &Handle, receiver: SsfReceiver) -> SsfTask {
    SsfTask {
        task: runtime.spawn(run(receiver)).abort_handle(),
    }
}

/// The stream as set up at the transmitter.
struct Stream {
    endpoints: Endpoints,
    /// The configuration endpoint (required: streams configured by hand are not supported).
    configuration: Uri,
    id: String,
    /// Where to poll (poll delivery): the stream's `endpoint_url`, the transmitter's to give.
    poll: Option<Uri>,
    /// How long to wait for a verification event before asking again.
    verify_every: Duration,
}

/// A retry delay that doubles from the first to the longest.
struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

async fn run(receiver: SsfReceiver) {
    let settings = &receiver.inner.settings;
    let mut retry = Backoff {
        first: settings.first_retry,
        max: settings.max_retry,
        next: settings.first_retry,
    };
    loop {
        match set_up(&receiver).await {
            Ok(stream) => {
                retry.reset();
                follow(&receiver, &stream, &mut retry).await;
                receiver.inner.health.stream_lost();
                receiver.failed(format!(
                    "the transmitter no longer has the stream {}",
                    stream.id
                ));
            }
            Err(error) => receiver.failed(error),
        }
        tokio::time::sleep(retry.next()).await;
    }
}

/// Reads the transmitter's metadata, installs its keys, finds or creates the stream.
async fn set_up(receiver: &SsfReceiver) -> Result<Stream, String> {
    let inner = &receiver.inner;
    let settings = &inner.settings;
    let endpoints = transmitter::discover(&inner.client, &settings.wanted.issuer).await?;
    inner.health.contact(inner.clock.now(), Contact::Management);
    let method = settings.wanted.delivery.method();
    let offered = &endpoints.delivery_methods_supported;
    if !offered.is_empty() && !offered.iter().any(|m| m == method) {
        return Err(format!(
            "the transmitter does not deliver by {method} (it offers {offered:?})"
        ));
    }
    install_keys(receiver, &endpoints)?;
    let configuration = endpoints.configuration.clone().ok_or_else(|| {
        "the transmitter has no configuration_endpoint (streams configured by hand are not \
         supported)"
            .to_owned()
    })?;
    let stream =
        transmitter::find_or_create(&inner.client, &configuration, &settings.wanted).await?;
    let poll = match settings.wanted.delivery {
        WantedDelivery::Poll => {
            let url = stream
                .delivery
                .as_ref()
                .and_then(|d| d.endpoint_url.as_deref())
                .ok_or_else(|| {
                    format!("the poll stream {} has no endpoint_url", stream.stream_id)
                })?;
            Some(super::client::parse_url(
                "the stream's poll endpoint_url",
                url,
            )?)
        }
        WantedDelivery::Push { .. } => None,
    };
    let verify_every = settings.verification_retry.max(Duration::from_secs(
        stream.min_verification_interval.unwrap_or(0),
    ));
    inner.health.stream_found(
        stream.stream_id.clone(),
        endpoints.verification.is_some(),
        true,
        endpoints.critical_subject_members.clone(),
    );
    tracing::info!(
        transmitter = %settings.wanted.issuer,
        stream = %stream.stream_id,
        delivery = settings.wanted.delivery.method(),
        "shared signals stream set up"
    );
    Ok(Stream {
        endpoints,
        configuration,
        id: stream.stream_id,
        poll,
        verify_every,
    })
}

/// The keys of the transmitter's `jwks_uri`, unless keys were given; the first set installed
/// stays (its refresh task follows the transmitter's rotations).
fn install_keys(receiver: &SsfReceiver, endpoints: &Endpoints) -> Result<(), String> {
    let keys = &receiver.inner.keys;
    if keys.get().is_some() {
        return Ok(());
    }
    let jwks = endpoints
        .jwks
        .clone()
        .ok_or_else(|| "the transmitter publishes no jwks_uri".to_owned())?;
    let remote = RemoteJwks::builder(jwks)
        .build()
        .map_err(|e| format!("cannot fetch the transmitter's keys: {e}"))?;
    let _ = keys.set(TransmitterKeys {
        keys: remote.keys().clone(),
        remote: Some(remote),
    });
    Ok(())
}

/// Follows the stream until the transmitter no longer has it.
async fn follow(receiver: &SsfReceiver, stream: &Stream, retry: &mut Backoff) {
    let settings = &receiver.inner.settings;
    let mut reports = Reports::default();
    loop {
        verify_if_due(receiver, stream).await;
        let delay = match &stream.poll {
            Some(endpoint) => {
                let client = &receiver.inner.client;
                match poll::poll_once(
                    receiver,
                    client,
                    endpoint,
                    settings.max_events,
                    &mut reports,
                )
                .await
                {
                    Polled::Done { more } => {
                        retry.reset();
                        if more {
                            Duration::ZERO
                        } else {
                            settings.poll_interval
                        }
                    }
                    Polled::Unpublished => retry.next(),
                    Polled::StreamGone => return,
                    Polled::Failed(error) => {
                        receiver.failed(error);
                        retry.next()
                    }
                }
            }
            None => match check_stream(receiver, stream).await {
                Ok(true) => {
                    retry.reset();
                    settings.status_interval
                }
                Ok(false) => return,
                Err(error) => {
                    receiver.failed(error);
                    retry.next()
                }
            },
        };
        tokio::time::sleep(delay).await;
    }
}

/// Push delivery: the transmitter is checked on by reading the stream's status (or, without a
/// status endpoint, its configuration); `false` when the stream is gone.
async fn check_stream(receiver: &SsfReceiver, stream: &Stream) -> Result<bool, String> {
    let inner = &receiver.inner;
    let exists = match &stream.endpoints.status {
        Some(status) => match transmitter::read_status(&inner.client, status, &stream.id).await? {
            Some(state) => {
                inner.health.stream_updated(state);
                true
            }
            None => false,
        },
        None => {
            transmitter::stream_exists(&inner.client, &stream.configuration, &stream.id).await?
        }
    };
    if exists {
        inner.health.contact(inner.clock.now(), Contact::Management);
    }
    Ok(exists)
}

/// Asks for a verification event when the transmitter offers it and none with this receiver's
/// state has arrived lately.
async fn verify_if_due(receiver: &SsfReceiver, stream: &Stream) {
    let inner = &receiver.inner;
    let Some(verification) = &stream.endpoints.verification else {
        return;
    };
    let now = inner.clock.now();
    if !inner.health.verification_due(now, stream.verify_every) {
        return;
    }
    let state = tollgate_core::random::id();
    // Recorded first: the event may arrive (pushed) before the request is answered.
    inner.health.verification_requested(state.clone(), now);
    match transmitter::request_verification(&inner.client, verification, &stream.id, &state).await {
        Ok(()) => inner.health.contact(now, Contact::Management),
        Err(error) => receiver.failed(format!("verification: {error}")),
    }
}
