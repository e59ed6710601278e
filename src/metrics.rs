//! Prometheus metrics: what an operator watches to know the webhook is healthy and fast.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use kube::core::admission::Operation;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::hooks::StashKind;
use crate::rules::Resolution;

/// The review's outcome, as counted.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Allowed, with warnings returned to the client.
    Warned,
    Denied,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum LookupSource {
    Cache,
    Api,
    File,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum LookupResult {
    Found,
    NotFound,
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Warned => "warned",
            Verdict::Denied => "denied",
        }
    }
}

impl LookupSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LookupSource::Cache => "cache",
            LookupSource::Api => "api",
            LookupSource::File => "file",
        }
    }
}

impl LookupResult {
    pub fn as_str(self) -> &'static str {
        match self {
            LookupResult::Found => "found",
            LookupResult::NotFound => "not_found",
            LookupResult::Error => "error",
        }
    }

    pub fn of(resolution: &Resolution) -> Self {
        match resolution {
            Resolution::Found(_) => LookupResult::Found,
            Resolution::NotFound => LookupResult::NotFound,
            Resolution::Unverified(_) => LookupResult::Error,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    kind: &'static str,
    operation: &'static str,
    verdict: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    source: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    code: u16,
}

/// How many values each label takes: the judged kinds and "other"; CREATE, UPDATE, DELETE,
/// CONNECT; allowed, warned, denied; cache, api, file; found, not found, error.
const KINDS: usize = StashKind::ALL.len() + 1;
const OPERATIONS: usize = 4;
const VERDICTS: usize = 3;
const SOURCES: usize = 3;
const RESULTS: usize = 3;
const REVIEW_COUNTERS: usize = KINDS * OPERATIONS * VERDICTS;
const LOOKUP_COUNTERS: usize = SOURCES * RESULTS;

struct Inner {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
    latency: Histogram,
    lookups: Family<LookupLabels, Counter>,
    /// Each review and lookup counter, once created: label sets are few and fixed, and a
    /// family lookup hashes every label on every call.
    review_counters: [OnceLock<Counter>; REVIEW_COUNTERS],
    lookup_counters: [OnceLock<Counter>; LOOKUP_COUNTERS],
    cache_size: Gauge,
    watch_errors: Counter,
    cert_expiry: Gauge<f64, AtomicU64>,
}

/// A cheap, clonable handle on the process's metrics.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("stash_webhook");
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "reviews",
            "AdmissionReviews answered, by kind, operation and verdict",
            reviews.clone(),
        );
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "rejected_requests",
            "Requests to /validate refused before review (bad body, type, size, timeout), by HTTP status",
            rejected.clone(),
        );
        // 0.5 ms .. ~4 s: a cached review takes well under a millisecond, a live GET tens of ms.
        let latency = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "review_duration_seconds",
            "Time from a request's body being read to its answer",
            latency.clone(),
        );
        let lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "function_lookups",
            "Function lookups, by source (cache, api, file) and result",
            lookups.clone(),
        );
        let cache_size = Gauge::default();
        registry.register(
            "function_cache_size",
            "Functions held by the Function source",
            cache_size.clone(),
        );
        let watch_errors = Counter::default();
        registry.register(
            "function_watch_errors",
            "Errors from the Function watch (each followed by a retry with backoff)",
            watch_errors.clone(),
        );
        let cert_expiry = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until the serving certificate expires",
            cert_expiry.clone(),
        );
        Metrics(Arc::new(Inner {
            registry,
            reviews,
            rejected,
            latency,
            lookups,
            review_counters: std::array::from_fn(|_| OnceLock::new()),
            lookup_counters: std::array::from_fn(|_| OnceLock::new()),
            cache_size,
            watch_errors,
            cert_expiry,
        }))
    }
}

impl Metrics {
    /// Counts a review. Labels are static strings (the judged kinds, or "other"), so a counter
    /// that exists costs no allocation and a misrouted kind cannot grow the label set.
    pub fn record_review(
        &self,
        kind: Option<StashKind>,
        operation: &Operation,
        verdict: Verdict,
        seconds: f64,
    ) {
        let kind_index = kind.map_or(StashKind::ALL.len(), |k| k as usize);
        let operation_index = match operation {
            Operation::Create => 0,
            Operation::Update => 1,
            Operation::Delete => 2,
            Operation::Connect => 3,
        };
        let slot = (kind_index * OPERATIONS + operation_index) * VERDICTS + verdict as usize;
        self.0.review_counters[slot]
            .get_or_init(|| {
                self.0
                    .reviews
                    .get_or_create(&ReviewLabels {
                        kind: kind.map_or("other", StashKind::as_str),
                        operation: operation_label(operation),
                        verdict: verdict.as_str(),
                    })
                    .clone()
            })
            .inc();
        self.0.latency.observe(seconds);
    }

    pub fn record_rejected(&self, code: u16) {
        self.0.rejected.get_or_create(&RejectLabels { code }).inc();
    }

    pub fn record_lookup(&self, source: LookupSource, result: LookupResult) {
        self.0.lookup_counters[source as usize * RESULTS + result as usize]
            .get_or_init(|| {
                self.0
                    .lookups
                    .get_or_create(&LookupLabels {
                        source: source.as_str(),
                        result: result.as_str(),
                    })
                    .clone()
            })
            .inc();
    }

    pub fn set_cached_functions(&self, n: usize) {
        self.0.cache_size.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn record_watch_error(&self) {
        self.0.watch_errors.inc();
    }

    pub fn set_cert_expiry_seconds(&self, seconds: f64) {
        self.0.cert_expiry.set(seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}

/// An operation as the API server writes it, for labels and logs.
pub fn operation_label(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters are kept by slot: every label set must get its own.
    #[test]
    fn every_label_set_is_counted_apart() {
        let metrics = Metrics::default();
        let kinds = StashKind::ALL.into_iter().map(Some).chain([None]);
        for kind in kinds {
            for operation in [
                Operation::Create,
                Operation::Update,
                Operation::Delete,
                Operation::Connect,
            ] {
                for verdict in [Verdict::Allowed, Verdict::Warned, Verdict::Denied] {
                    metrics.record_review(kind, &operation, verdict, 0.001);
                }
            }
        }
        for source in [LookupSource::Cache, LookupSource::Api, LookupSource::File] {
            for result in [
                LookupResult::Found,
                LookupResult::NotFound,
                LookupResult::Error,
            ] {
                metrics.record_lookup(source, result);
            }
        }
        metrics.record_review(None, &Operation::Create, Verdict::Denied, 0.001);
        let text = metrics.encode();
        let counts = |prefix: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .map(|l| l.rsplit_once(' ').map_or("", |(_, n)| n).to_owned())
                .collect()
        };
        let reviews = counts("stash_webhook_reviews_total{");
        assert_eq!(reviews.len(), REVIEW_COUNTERS);
        assert_eq!(
            reviews.iter().filter(|n| *n == "1").count(),
            REVIEW_COUNTERS - 1
        );
        assert!(text.contains(
            r#"stash_webhook_reviews_total{kind="other",operation="CREATE",verdict="denied"} 2"#
        ));
        let lookups = counts("stash_webhook_function_lookups_total{");
        assert_eq!(lookups, vec!["1".to_owned(); LOOKUP_COUNTERS]);
    }
}
