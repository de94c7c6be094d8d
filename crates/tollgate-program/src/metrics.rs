//! What the programs' scrape-time collectors share: one gauge or counter (or a counter's or a
//! gauge's values by one or more labels), read when Prometheus scrapes and encoded on the spot.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

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
