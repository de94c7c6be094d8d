//! The `[metrics]` listener of a running server: where it is, and one scrape parsed.

use super::{Server, http};
use std::collections::BTreeMap;

/// The metrics listener's address, from the server's log.
pub fn metrics_base(server: &Server) -> String {
    let logs = server.logs.lock().unwrap();
    let line = logs
        .iter()
        .find(|line| line.contains("metrics are served"))
        .unwrap_or_else(|| panic!("no metrics listener in the log: {logs:?}"));
    let address = line
        .split("address=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    format!("http://{address}")
}

/// One scrape: samples by name and labels (`name{a="1",b="2"}`, labels as the text has them).
pub struct Scrape {
    pub samples: BTreeMap<String, f64>,
    pub text: String,
}

impl Scrape {
    /// Parses the text exposition format: `# ...` lines are metadata; every other line is
    /// `name[{labels}] value`. Label values here never hold spaces or `}`.
    pub fn parse(text: String) -> Scrape {
        assert!(text.ends_with("# EOF\n"), "not OpenMetrics text: {text}");
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {line:?}"));
            assert!(
                samples.insert(series.to_owned(), value).is_none(),
                "{series} twice"
            );
        }
        Scrape { samples, text }
    }

    /// The sample's value; 0 when the series is absent (a counter never incremented).
    pub fn value(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    pub fn has(&self, series: &str) -> bool {
        self.samples.contains_key(series)
    }
}

pub async fn scrape(base: &str) -> Scrape {
    let response = http().get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    Scrape::parse(response.text().await.unwrap())
}
