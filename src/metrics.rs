//! Prometheus metrics: what an operator watches to know the webhook is healthy and fast.

use std::sync::{Arc, OnceLock};

use kube::core::admission::Operation;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::rules::Resolution;
use crate::stash::StashKind;

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

    pub fn of<T>(resolution: &Resolution<T>) -> Self {
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
    resource: &'static str,
    source: &'static str,
    result: &'static str,
}

/// Which referent (`functions`, `tasks`) or watched kind a figure is about.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BrokenLabels {
    kind: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    code: u16,
}

/// The label sets of `reviews`: 6 kinds (the judged ones and "other"), 4 operations, 3 verdicts.
const REVIEW_SETS: usize = 6 * 4 * 3;
/// The label sets of `lookups` for the two referents: 2 resources, 3 sources, 3 results.
const LOOKUP_SETS: usize = 2 * 3 * 3;

/// The process's metrics, each a prometheus-client family or metric registered once.
struct Inner {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    /// Each review counter once its family has created it: a review is then counted without
    /// hashing its labels into the family's map. The family still creates each series on first
    /// use, so the exposition is the same.
    review_counters: [OnceLock<Counter>; REVIEW_SETS],
    lookup_counters: [OnceLock<Counter>; LOOKUP_SETS],
    rejected: Family<RejectLabels, Counter>,
    latency: Histogram,
    lookups: Family<LookupLabels, Counter>,
    cache_size: Family<ResourceLabels, Gauge>,
    watch_errors: Family<ResourceLabels, Counter>,
    cert_not_after: Gauge,
    indexed_objects: Gauge,
    index_synced: Gauge,
    broken_references: Family<BrokenLabels, Gauge>,
    events: Family<ReasonLabels, Counter>,
    leader: Gauge,
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
            "lookups",
            "Lookups of referents, by resource (functions, tasks), source (cache, api, file) and result",
            lookups.clone(),
        );
        let cache_size = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "cache_size",
            "Referents held by their source, by resource (functions, tasks)",
            cache_size.clone(),
        );
        let watch_errors = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "watch_errors",
            "Errors from a watch (each followed by a retry with backoff), by resource",
            watch_errors.clone(),
        );
        // A timestamp rather than the seconds left: it stays true between reloads, and an alert
        // computes what is left (`... - time() < 14 * 86400`), as cert-manager's metrics do.
        let cert_not_after = Gauge::default();
        registry.register(
            "certificate_not_after_timestamp_seconds",
            "When the serving certificate expires (its notAfter), in seconds since the Unix epoch",
            cert_not_after.clone(),
        );
        let indexed_objects = Gauge::default();
        registry.register(
            "reference_index_objects",
            "Objects of the five hook kinds held by the reference index",
            indexed_objects.clone(),
        );
        let index_synced = Gauge::default();
        registry.register(
            "reference_index_synced",
            "1 once every hook kind has been listed into the reference index",
            index_synced.clone(),
        );
        let broken_references = Family::<BrokenLabels, Gauge>::default();
        registry.register(
            "broken_references",
            "References (hook executors, tasks) that cannot be resolved, by kind and reason (on the audit's leader)",
            broken_references.clone(),
        );
        let events = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "events_written",
            "Events written by the audit, by reason",
            events.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "audit_leader",
            "1 while this replica holds the audit's Lease and writes Events",
            leader.clone(),
        );
        Metrics(Arc::new(Inner {
            indexed_objects,
            index_synced,
            broken_references,
            events,
            leader,
            registry,
            reviews,
            review_counters: std::array::from_fn(|_| OnceLock::new()),
            lookup_counters: std::array::from_fn(|_| OnceLock::new()),
            rejected,
            latency,
            lookups,
            cache_size,
            watch_errors,
            cert_not_after,
        }))
    }
}

impl Metrics {
    /// Counts a review. Labels are static strings (the judged kinds, or "other"), so a misrouted
    /// kind cannot grow the label set.
    pub fn record_review(
        &self,
        kind: Option<StashKind>,
        operation: &Operation,
        verdict: Verdict,
        seconds: f64,
    ) {
        let kind_index = kind.map_or(0, |k| k as usize + 1);
        let index = (kind_index * 4 + operation_index(operation)) * 3 + verdict as usize;
        self.0.review_counters[index]
            .get_or_init(|| {
                self.0.reviews.get_or_create_owned(&ReviewLabels {
                    kind: kind.map_or("other", StashKind::as_str),
                    operation: operation_label(operation),
                    verdict: verdict.as_str(),
                })
            })
            .inc();
        self.0.latency.observe(seconds);
    }

    /// Counts a review of a kind of another family (`label`: `BackupConfiguration.core.kubestash.com`).
    pub fn record_review_of(
        &self,
        label: &'static str,
        operation: &Operation,
        verdict: Verdict,
        seconds: f64,
    ) {
        self.0
            .reviews
            .get_or_create(&ReviewLabels {
                kind: label,
                operation: operation_label(operation),
                verdict: verdict.as_str(),
            })
            .inc();
        self.0.latency.observe(seconds);
    }

    pub fn record_rejected(&self, code: u16) {
        self.0.rejected.get_or_create(&RejectLabels { code }).inc();
    }

    /// Counts a lookup of a referent (`resource`: `functions`, `tasks`).
    pub fn record_lookup(
        &self,
        resource: &'static str,
        source: LookupSource,
        result: LookupResult,
    ) {
        let labels = || LookupLabels {
            resource,
            source: source.as_str(),
            result: result.as_str(),
        };
        let resource_index = match resource {
            "functions" => 0,
            "tasks" => 1,
            _ => {
                self.0.lookups.get_or_create(&labels()).inc();
                return;
            }
        };
        let index = (resource_index * 3 + source as usize) * 3 + result as usize;
        self.0.lookup_counters[index]
            .get_or_init(|| self.0.lookups.get_or_create_owned(&labels()))
            .inc();
    }

    /// How many referents of `resource` the source holds.
    pub fn set_cached(&self, resource: &'static str, n: usize) {
        self.0
            .cache_size
            .get_or_create(&ResourceLabels { resource })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts a failed watch of `resource` (a referent, or a kind of the reference index).
    pub fn record_watch_error(&self, resource: &'static str) {
        self.0
            .watch_errors
            .get_or_create(&ResourceLabels { resource })
            .inc();
    }

    /// The serving certificate's notAfter, in seconds since the Unix epoch.
    pub fn set_cert_not_after(&self, timestamp: i64) {
        self.0.cert_not_after.set(timestamp);
    }

    pub fn set_indexed_objects(&self, n: usize) {
        self.0
            .indexed_objects
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn set_index_synced(&self, synced: bool) {
        self.0.index_synced.set(i64::from(synced));
    }

    pub fn set_broken_references(&self, kind: StashKind, reason: &'static str, n: i64) {
        self.0
            .broken_references
            .get_or_create(&BrokenLabels {
                kind: kind.as_str(),
                reason,
            })
            .set(n);
    }

    /// The same for a kind of another family (`label`: `BackupConfiguration.core.kubestash.com`).
    pub fn set_broken_references_of(&self, label: &'static str, reason: &'static str, n: i64) {
        self.0
            .broken_references
            .get_or_create(&BrokenLabels {
                kind: label,
                reason,
            })
            .set(n);
    }

    pub fn record_event(&self, reason: &str) {
        self.0
            .events
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.0.leader.set(i64::from(leading));
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}

fn operation_index(operation: &Operation) -> usize {
    match operation {
        Operation::Create => 0,
        Operation::Update => 1,
        Operation::Delete => 2,
        Operation::Connect => 3,
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

    #[test]
    fn each_label_set_is_counted_apart() {
        let metrics = Metrics::default();
        metrics.record_review(
            Some(StashKind::BackupBatch),
            &Operation::Create,
            Verdict::Denied,
            0.001,
        );
        metrics.record_review(
            Some(StashKind::BackupBatch),
            &Operation::Create,
            Verdict::Denied,
            0.001,
        );
        metrics.record_review(None, &Operation::Update, Verdict::Allowed, 0.001);
        metrics.record_lookup("tasks", LookupSource::Api, LookupResult::NotFound);
        metrics.set_cached("functions", 3);
        metrics.set_cert_not_after(1_800_000_000);
        let text = metrics.encode();
        for line in [
            r#"stash_webhook_reviews_total{kind="BackupBatch",operation="CREATE",verdict="denied"} 2"#,
            r#"stash_webhook_reviews_total{kind="other",operation="UPDATE",verdict="allowed"} 1"#,
            r#"stash_webhook_lookups_total{resource="tasks",source="api",result="not_found"} 1"#,
            r#"stash_webhook_cache_size{resource="functions"} 3"#,
            "stash_webhook_review_duration_seconds_count 3",
            "stash_webhook_certificate_not_after_timestamp_seconds 1800000000",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn every_review_and_lookup_label_set_is_a_series_of_its_own() {
        let metrics = Metrics::default();
        let kinds = StashKind::ALL.into_iter().map(Some).chain([None]);
        let operations = [
            Operation::Create,
            Operation::Update,
            Operation::Delete,
            Operation::Connect,
        ];
        let verdicts = [Verdict::Allowed, Verdict::Warned, Verdict::Denied];
        for kind in kinds {
            for operation in &operations {
                for verdict in verdicts {
                    metrics.record_review(kind, operation, verdict, 0.001);
                }
            }
        }
        let sources = [LookupSource::Cache, LookupSource::Api, LookupSource::File];
        let results = [
            LookupResult::Found,
            LookupResult::NotFound,
            LookupResult::Error,
        ];
        for resource in ["functions", "tasks", "backupbatches"] {
            for source in sources {
                for result in results {
                    metrics.record_lookup(resource, source, result);
                }
            }
        }
        let text = metrics.encode();
        let series = |prefix: &str| {
            let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
            assert!(lines.iter().all(|l| l.ends_with("} 1")), "{text}");
            lines.len()
        };
        assert_eq!(series("stash_webhook_reviews_total{"), 6 * 4 * 3);
        assert_eq!(series("stash_webhook_lookups_total{"), 3 * 3 * 3);
    }
}
