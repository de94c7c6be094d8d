//! What the programs' scrape-time collectors share: one gauge or counter (or a counter's or a
//! gauge's values by one or more labels), read when Prometheus scrapes and encoded on the spot.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;
use tollgate_signals::SsfReceiver;

/// One unlabelled gauge, with its unit if it has one.
pub fn gauge<N>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> std::fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, unit, gauge.metric_type())?)
}

/// One unlabelled counter.
pub fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

/// One counter with a value per `label` value: `name_total{label="value"} n` for each pair.
pub fn counters(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, *value)];
        ConstCounter::new(*n).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One counter whose every sample carries the labels `labels`, with its values in the same
/// order: `name_total{a="x",b="y"} n` for each sample (one receiver's outcomes, say, where
/// [`counters`] has one label).
pub fn labelled_counters<const N: usize>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    labels: [&str; N],
    samples: &[([&str; N], u64)],
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (values, n) in samples {
        let pairs: [(&str, &str); N] = std::array::from_fn(|i| (labels[i], values[i]));
        ConstCounter::new(*n).encode(metric.encode_family(&pairs)?)?;
    }
    Ok(())
}

/// One gauge whose every sample carries the labels `labels`, with its values in the same order:
/// `name{a="x"} n` for each sample (a readiness per receiver, say).
pub fn labelled_gauges<const N: usize>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    labels: [&str; N],
    samples: &[([&str; N], i64)],
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (values, n) in samples {
        let pairs: [(&str, &str); N] = std::array::from_fn(|i| (labels[i], values[i]));
        ConstGauge::new(*n).encode(metric.encode_family(&pairs)?)?;
    }
    Ok(())
}

/// Every Shared Signals receiver's counters, refusals by reason and readiness, by transmitter:
/// `{prefix}_shared_signals_total{transmitter, outcome}` (`received`, `applied`, `ignored`,
/// `refused`), `{prefix}_shared_signals_refused_total{transmitter, reason}` (the receiver's
/// reasons, and `unavailable`: not published for now) and
/// `{prefix}_shared_signals_ready{transmitter}`.
pub fn shared_signals(
    encoder: &mut DescriptorEncoder<'_>,
    prefix: &str,
    receivers: &[(&str, &SsfReceiver)],
) -> std::fmt::Result {
    let mut outcomes = Vec::with_capacity(receivers.len() * 4);
    let mut refusals = Vec::new();
    let mut ready = Vec::with_capacity(receivers.len());
    for (transmitter, receiver) in receivers {
        let seen = receiver.stats().snapshot();
        // A SET not taken for now is refused too: the transmitter sends it again.
        let refused = seen.replayed + seen.invalid + seen.unavailable;
        outcomes.extend([
            ([*transmitter, "received"], seen.received),
            ([*transmitter, "applied"], seen.applied),
            ([*transmitter, "ignored"], seen.ignored),
            ([*transmitter, "refused"], refused),
        ]);
        let reasons = receiver.stats().refused_by_reason();
        refusals.extend(
            reasons
                .into_iter()
                .map(|(reason, n)| ([*transmitter, reason], n)),
        );
        refusals.push(([*transmitter, "unavailable"], seen.unavailable));
        ready.push(([*transmitter], i64::from(receiver.ready())));
    }
    labelled_counters(
        encoder,
        &format!("{prefix}_shared_signals"),
        "Security events from Shared Signals transmitters, by outcome (applied: published; \
         ignored: not a revocation; refused: invalid, replayed, or not published for now)",
        ["transmitter", "outcome"],
        &outcomes,
    )?;
    labelled_counters(
        encoder,
        &format!("{prefix}_shared_signals_refused"),
        "Security events refused, by transmitter and reason (unavailable: not published for \
         now, the transmitter sends it again)",
        ["transmitter", "reason"],
        &refusals,
    )?;
    labelled_gauges(
        encoder,
        &format!("{prefix}_shared_signals_ready"),
        "1 while the receiver's stream is set up, verified, enabled and its transmitter answers",
        ["transmitter"],
        &ready,
    )
}

/// A TLS listener's counters: `{prefix}_tls_handshake_failures_total` and
/// `{prefix}_tls_reloads_total{outcome}` (`ok`: the new certificates are served; `failed`: a bad
/// file, the previous ones still are).
pub fn tls(
    encoder: &mut DescriptorEncoder<'_>,
    prefix: &str,
    stats: crate::tls::TlsStats,
) -> std::fmt::Result {
    counter(
        encoder,
        &format!("{prefix}_tls_handshake_failures"),
        "TLS handshakes that failed or did not finish within the header read timeout",
        stats.handshake_failures,
    )?;
    counters(
        encoder,
        &format!("{prefix}_tls_reloads"),
        "Reloads of the TLS certificates (SIGHUP or a changed file), by outcome",
        "outcome",
        &[("ok", stats.reloads), ("failed", stats.failed_reloads)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::collector::Collector;
    use prometheus_client::registry::Registry;

    #[derive(Debug)]
    struct Receivers;

    impl Collector for Receivers {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
            labelled_counters(
                &mut encoder,
                "signals",
                "Signals",
                ["transmitter", "outcome"],
                &[(["https://a", "applied"], 2), (["https://b", "refused"], 1)],
            )?;
            labelled_gauges(
                &mut encoder,
                "signals_ready",
                "Ready",
                ["transmitter"],
                &[(["https://a"], 1), (["https://b"], 0)],
            )
        }
    }

    #[test]
    fn labelled_samples_carry_every_label_in_order() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Receivers));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE signals counter",
            "signals_total{transmitter=\"https://a\",outcome=\"applied\"} 2",
            "signals_total{transmitter=\"https://b\",outcome=\"refused\"} 1",
            "# TYPE signals_ready gauge",
            "signals_ready{transmitter=\"https://a\"} 1",
            "signals_ready{transmitter=\"https://b\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
