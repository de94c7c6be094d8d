//! The transmitter as the receiver sees it: its configuration metadata (SSF 1.0 §7) and its
//! stream management API (§8.1).

use super::client::{Answer, HttpClient, parse_url};
use super::status::StreamState;
use http::{StatusCode, Uri};
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_core::Audience;

/// RFC 8935 push delivery, as SSF 1.0 §6.1.1 names it.
pub(crate) const PUSH_METHOD: &str = "urn:ietf:rfc:8935";
/// RFC 8936 poll delivery, as SSF 1.0 §6.1.2 names it.
pub(crate) const POLL_METHOD: &str = "urn:ietf:rfc:8936";

/// The transmitter's endpoints and what else the receiver needs from its metadata.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) jwks: Option<Uri>,
    pub(crate) configuration: Option<Uri>,
    pub(crate) status: Option<Uri>,
    pub(crate) verification: Option<Uri>,
    /// Empty when the transmitter does not say (the member is only recommended).
    pub(crate) delivery_methods_supported: Vec<String>,
    pub(crate) critical_subject_members: Vec<String>,
}

/// How the receiver wants its SETs, as a stream's `delivery` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WantedDelivery {
    Push {
        endpoint_url: String,
        authorization_header: Option<String>,
    },
    Poll,
}

impl WantedDelivery {
    pub(crate) fn method(&self) -> &'static str {
        match self {
            WantedDelivery::Push { .. } => PUSH_METHOD,
            WantedDelivery::Poll => POLL_METHOD,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            WantedDelivery::Push {
                endpoint_url,
                authorization_header,
            } => {
                let mut delivery = json!({ "method": PUSH_METHOD, "endpoint_url": endpoint_url });
                if let Some(header) = authorization_header {
                    delivery["authorization_header"] = json!(header);
                }
                delivery
            }
            WantedDelivery::Poll => json!({ "method": POLL_METHOD }),
        }
    }
}

/// The stream this receiver wants: from whom, for whom, how, and which events.
#[derive(Debug, Clone)]
pub(crate) struct WantedStream {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) delivery: WantedDelivery,
    pub(crate) events_requested: Vec<String>,
    pub(crate) description: String,
}

/// A stream's configuration as the transmitter answers it (the members the receiver reads).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StreamConfig {
    pub(crate) stream_id: String,
    pub(crate) iss: String,
    #[serde(default)]
    pub(crate) aud: Option<Audience>,
    #[serde(default)]
    pub(crate) delivery: Option<StreamDelivery>,
    #[serde(default)]
    pub(crate) min_verification_interval: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StreamDelivery {
    pub(crate) method: String,
    #[serde(default)]
    pub(crate) endpoint_url: Option<String>,
}

/// Where the metadata of `issuer` is: `/.well-known/ssf-configuration` inserted between the
/// host and the issuer's path, without the path's trailing `/` (SSF 1.0 §7.2).
pub(crate) fn metadata_url(issuer: &Uri) -> Result<Uri, String> {
    let path = issuer.path().trim_end_matches('/');
    let authority = issuer
        .authority()
        .ok_or_else(|| "the transmitter's issuer has no host".to_owned())?;
    let scheme = issuer.scheme_str().unwrap_or("https");
    format!("{scheme}://{authority}/.well-known/ssf-configuration{path}")
        .parse()
        .map_err(|e| format!("cannot form the transmitter's metadata URL: {e}"))
}

/// Reads the transmitter's configuration metadata; its `issuer` must be the one configured.
pub(crate) async fn discover(client: &HttpClient, issuer: &str) -> Result<Endpoints, String> {
    #[derive(Deserialize)]
    struct Metadata {
        issuer: String,
        #[serde(default)]
        jwks_uri: Option<String>,
        #[serde(default)]
        configuration_endpoint: Option<String>,
        #[serde(default)]
        status_endpoint: Option<String>,
        #[serde(default)]
        verification_endpoint: Option<String>,
        #[serde(default)]
        delivery_methods_supported: Vec<String>,
        #[serde(default)]
        critical_subject_members: Vec<String>,
    }
    let url = metadata_url(&parse_url("the transmitter's issuer", issuer)?)?;
    let answer = client.get(&url, false).await?;
    let metadata: Metadata =
        ok(&answer, "the transmitter's metadata")?.json("the transmitter's metadata")?;
    // SSF 1.0 §7.2.3: the issuer must be the one the metadata was asked of, exactly.
    if metadata.issuer != issuer {
        return Err(format!(
            "the transmitter's metadata names issuer {:?}, not {issuer:?}",
            metadata.issuer
        ));
    }
    let endpoint = |what: &str, url: Option<String>| url.map(|u| parse_url(what, &u)).transpose();
    Ok(Endpoints {
        jwks: endpoint("jwks_uri", metadata.jwks_uri)?,
        configuration: endpoint("configuration_endpoint", metadata.configuration_endpoint)?,
        status: endpoint("status_endpoint", metadata.status_endpoint)?,
        verification: endpoint("verification_endpoint", metadata.verification_endpoint)?,
        delivery_methods_supported: metadata.delivery_methods_supported,
        critical_subject_members: metadata.critical_subject_members,
    })
}

/// This receiver's stream at the transmitter: an existing one that matches what it wants
/// (same issuer, audience and delivery), or a new one.
pub(crate) async fn find_or_create(
    client: &HttpClient,
    configuration: &Uri,
    wanted: &WantedStream,
) -> Result<StreamConfig, String> {
    let answer = client.get(configuration, true).await?;
    // §8.1.1.2 says an empty list; some transmitters answer 404 when they have no stream.
    let listed: Value = if answer.status == StatusCode::NOT_FOUND {
        Value::Null
    } else {
        ok(&answer, "the stream list")?.json("the stream list")?
    };
    // §8.1.1.2: a list without `stream_id`; a transmitter with one stream per receiver may
    // answer that one stream alone.
    let streams = match listed {
        Value::Array(streams) => streams,
        Value::Null => Vec::new(),
        one => vec![one],
    };
    for stream in streams {
        let Ok(stream) = serde_json::from_value::<StreamConfig>(stream) else {
            continue;
        };
        if matches(&stream, wanted) {
            return Ok(stream);
        }
    }
    create(client, configuration, wanted).await
}

async fn create(
    client: &HttpClient,
    configuration: &Uri,
    wanted: &WantedStream,
) -> Result<StreamConfig, String> {
    let request = json!({
        "delivery": wanted.delivery.to_json(),
        "events_requested": wanted.events_requested,
        "description": wanted.description,
    });
    let answer = client.post(configuration, &request).await?;
    if answer.status == StatusCode::CONFLICT {
        return Err(
            "the transmitter allows one stream per receiver and has one for another delivery or \
             audience; change or delete it there"
                .to_owned(),
        );
    }
    let stream: StreamConfig = ok(&answer, "the created stream")?.json("the created stream")?;
    if stream.iss != wanted.issuer {
        return Err(format!(
            "the created stream names issuer {:?}, not {:?}",
            stream.iss, wanted.issuer
        ));
    }
    if let Some(aud) = &stream.aud
        && !aud.contains(&wanted.audience)
    {
        return Err(format!(
            "the created stream is for audience {:?}, not {:?}",
            aud.iter().collect::<Vec<_>>(),
            wanted.audience
        ));
    }
    let method = stream.delivery.as_ref().map(|d| d.method.as_str());
    if method != Some(wanted.delivery.method()) {
        return Err(format!(
            "the created stream delivers by {method:?}, not {}",
            wanted.delivery.method()
        ));
    }
    Ok(stream)
}

fn matches(stream: &StreamConfig, wanted: &WantedStream) -> bool {
    let delivery = stream.delivery.as_ref();
    let same_delivery = match &wanted.delivery {
        WantedDelivery::Push { endpoint_url, .. } => delivery.is_some_and(|d| {
            d.method == PUSH_METHOD && d.endpoint_url.as_deref() == Some(endpoint_url.as_str())
        }),
        WantedDelivery::Poll => delivery.is_some_and(|d| d.method == POLL_METHOD),
    };
    stream.iss == wanted.issuer
        && stream
            .aud
            .as_ref()
            .is_none_or(|aud| aud.contains(&wanted.audience))
        && same_delivery
}

/// Asks the transmitter to send the verification event with `state` (§8.1.4.2).
pub(crate) async fn request_verification(
    client: &HttpClient,
    verification: &Uri,
    stream_id: &str,
    state: &str,
) -> Result<(), String> {
    let answer = client
        .post(
            verification,
            &json!({ "stream_id": stream_id, "state": state }),
        )
        .await?;
    ok(&answer, "the verification request").map(|_| ())
}

/// Reads the stream's status (§8.1.2.1): `None` when the transmitter no longer has the stream.
pub(crate) async fn read_status(
    client: &HttpClient,
    status: &Uri,
    stream_id: &str,
) -> Result<Option<StreamState>, String> {
    #[derive(Deserialize)]
    struct Status {
        status: String,
    }
    let answer = client
        .get(&with_stream_id(status, stream_id)?, true)
        .await?;
    if answer.status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let status: Status = ok(&answer, "the stream status")?.json("the stream status")?;
    Ok(Some(StreamState::parse(&status.status)))
}

/// Whether the stream still exists at the transmitter (a read of its configuration).
pub(crate) async fn stream_exists(
    client: &HttpClient,
    configuration: &Uri,
    stream_id: &str,
) -> Result<bool, String> {
    let answer = client
        .get(&with_stream_id(configuration, stream_id)?, true)
        .await?;
    if answer.status == StatusCode::NOT_FOUND {
        return Ok(false);
    }
    ok(&answer, "the stream configuration").map(|_| true)
}

/// `uri` with `stream_id` added to its query.
pub(crate) fn with_stream_id(uri: &Uri, stream_id: &str) -> Result<Uri, String> {
    let encoded: String = form_urlencoded::byte_serialize(stream_id.as_bytes()).collect();
    let separator = if uri.query().is_some() { '&' } else { '?' };
    format!("{uri}{separator}stream_id={encoded}")
        .parse()
        .map_err(|e| format!("cannot add the stream id to {}: {e}", uri.path()))
}

/// The answer when it is a success, or an error naming `what` and the status.
pub(crate) fn ok<'a>(answer: &'a Answer, what: &str) -> Result<&'a Answer, String> {
    if answer.status.is_success() {
        Ok(answer)
    } else {
        Err(format!(
            "{what}: the transmitter answered {}",
            answer.status
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_is_under_the_host_with_the_issuers_path_after() {
        let url = |issuer: &str| metadata_url(&issuer.parse().unwrap()).unwrap().to_string();
        assert_eq!(
            url("https://tr.example.com"),
            "https://tr.example.com/.well-known/ssf-configuration"
        );
        assert_eq!(
            url("https://tr.example.com/"),
            "https://tr.example.com/.well-known/ssf-configuration"
        );
        assert_eq!(
            url("https://tr.example.com/issuer1/"),
            "https://tr.example.com/.well-known/ssf-configuration/issuer1"
        );
    }

    #[test]
    fn a_stream_id_is_added_to_the_query_encoded() {
        let with = |uri: &str, id: &str| with_stream_id(&uri.parse().unwrap(), id).unwrap();
        assert_eq!(
            with("https://tr.example.com/ssf/status", "a b&c").to_string(),
            "https://tr.example.com/ssf/status?stream_id=a+b%26c"
        );
        assert_eq!(
            with("https://tr.example.com/ssf/status?tenant=1", "s").to_string(),
            "https://tr.example.com/ssf/status?tenant=1&stream_id=s"
        );
    }
}
