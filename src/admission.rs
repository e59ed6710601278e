//! One review, start to finish: which requests are judged, the Function lookups they need, and
//! the reply. Knows nothing of HTTP.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use kube::core::admission::Operation;

use crate::functions::{FunctionSource, NameMap};
use crate::hooks::{executor_refs, StashKind};
use crate::metrics;
use crate::review::{Reply, Request};
use crate::rules::{self, FailurePolicy, Resolution};

/// How many Function lookups one review runs at once (a BackupBatch can name many Functions).
const LOOKUP_CONCURRENCY: usize = 16;

/// Judges admission requests against a Function source.
#[derive(Clone)]
pub struct Validator {
    source: Arc<dyn FunctionSource>,
    on_lookup_failure: FailurePolicy,
    lookup_timeout: Duration,
}

/// A review's answer and how it is counted.
#[derive(Debug)]
pub struct Outcome {
    pub reply: Reply,
    pub verdict: metrics::Verdict,
    /// False for requests this server lets through without judging (DELETE, unknown kinds).
    pub judged: bool,
    /// The request's kind when it is one this server judges (for metrics labels).
    pub kind: Option<StashKind>,
}

impl Validator {
    pub fn new(
        source: Arc<dyn FunctionSource>,
        on_lookup_failure: FailurePolicy,
        lookup_timeout: Duration,
    ) -> Self {
        Validator {
            source,
            on_lookup_failure,
            lookup_timeout,
        }
    }

    pub fn source(&self) -> &Arc<dyn FunctionSource> {
        &self.source
    }

    /// The time allowed for lookups: the configured timeout, but never more than half of what the
    /// API server said it will wait (`?timeout=`), so the answer always arrives in time.
    pub fn lookup_budget(&self, api_server_timeout: Option<Duration>) -> Duration {
        match api_server_timeout {
            Some(t) => self.lookup_timeout.min(t / 2),
            None => self.lookup_timeout,
        }
    }

    pub async fn review(&self, req: &Request<'_>, api_server_timeout: Option<Duration>) -> Outcome {
        let kind = StashKind::from_gvk(&req.kind.group, &req.kind.version, &req.kind.kind);
        let allow = |judged| Outcome {
            reply: Reply::allow(),
            verdict: metrics::Verdict::Allowed,
            judged,
            kind,
        };
        if !matches!(req.operation, Operation::Create | Operation::Update) {
            return allow(false);
        }
        let Some(kind) = kind else {
            tracing::info!(
                uid = %req.uid,
                group = %req.kind.group,
                version = %req.kind.version,
                kind = %req.kind.kind,
                "allowed a kind this webhook does not judge; check the ValidatingWebhookConfiguration rules"
            );
            return allow(false);
        };
        let Some(object) = &req.object else {
            return deny(
                kind,
                format!(
                    "{kind} {} has no object to judge: the request is malformed",
                    req.name
                ),
            );
        };

        let refs = executor_refs(kind, &object.spec);
        if refs.is_empty() {
            return allow(true);
        }
        let old_refs = match (&req.operation, &req.old_object) {
            (Operation::Update, Some(old)) => executor_refs(kind, &old.spec),
            _ => Vec::new(),
        };

        // Names the source knows in memory (the cache, a file) are answered here, with no
        // future per name; only the rest wait for the API server, a few at a time.
        let names = rules::names_to_resolve(&refs);
        let mut resolutions = Resolutions::with_capacity(names.len());
        let mut pending = Vec::new();
        for name in names {
            match self.source.resolve_now(name) {
                Some(resolution) => {
                    resolutions.insert(name, resolution);
                }
                None => pending.push(name),
            }
        }
        if !pending.is_empty() {
            let budget = self.lookup_budget(api_server_timeout);
            // Boxed: only reviews that wait for the API server pay for this state, and every
            // review's future stays small (axum boxes it per request).
            Box::pin(self.resolve_pending(pending, budget, &mut resolutions)).await;
        }

        let verdict = rules::judge(
            &refs,
            &old_refs,
            |name| resolutions.get(name),
            self.on_lookup_failure,
        );
        if !verdict.allowed() {
            let mut outcome = deny(kind, verdict.message());
            outcome.reply.warnings = verdict.warnings;
            return outcome;
        }
        let mut outcome = allow(true);
        if !verdict.warnings.is_empty() {
            outcome.verdict = metrics::Verdict::Warned;
            outcome.reply.warnings = verdict.warnings;
        }
        outcome
    }
}

impl Validator {
    /// Looks `names` up through the source, a few at a time, into `resolutions`.
    async fn resolve_pending<'a>(
        &'a self,
        names: Vec<&'a str>,
        budget: Duration,
        resolutions: &mut Resolutions<'a>,
    ) {
        // Futures built in a loop rather than a `.map()` closure: a closure over borrowed names
        // trips the compiler's higher-ranked `Send` inference for the axum handler.
        let mut lookups: Vec<BoxFuture<'_, (&str, Resolution)>> = Vec::new();
        for name in names {
            let source = &self.source;
            lookups.push(Box::pin(async move {
                (name, source.resolve(name, budget).await)
            }));
        }
        let mut answers = futures::stream::iter(lookups).buffer_unordered(LOOKUP_CONCURRENCY);
        while let Some((name, resolution)) = answers.next().await {
            resolutions.insert(name, resolution);
        }
    }
}

/// The answers for one review's Function names, each name once. A review usually names one or
/// two Functions: for those a list searched in order costs less than a hash map (no table to
/// allocate, hash into and free). A BackupBatch can name many, and gets the map.
enum Resolutions<'a> {
    Few(Vec<(&'a str, Resolution)>),
    Many(NameMap<&'a str, Resolution>),
}

impl<'a> Resolutions<'a> {
    fn with_capacity(names: usize) -> Self {
        if names <= rules::FEW_NAMES {
            Resolutions::Few(Vec::with_capacity(names))
        } else {
            Resolutions::Many(NameMap::with_capacity_and_hasher(names, Default::default()))
        }
    }

    /// Adds the answer for `name`, which has none yet.
    fn insert(&mut self, name: &'a str, resolution: Resolution) {
        match self {
            Resolutions::Few(list) => list.push((name, resolution)),
            Resolutions::Many(map) => {
                map.insert(name, resolution);
            }
        }
    }

    fn get(&self, name: &str) -> Option<&Resolution> {
        match self {
            Resolutions::Few(list) => list.iter().find(|(n, _)| *n == name).map(|(_, r)| r),
            Resolutions::Many(map) => map.get(name),
        }
    }
}

/// A denial as kubectl shows it: `Error from server (Forbidden): ... denied the request: MESSAGE`.
fn deny(kind: StashKind, message: String) -> Outcome {
    Outcome {
        reply: Reply::deny(message),
        verdict: metrics::Verdict::Denied,
        judged: true,
        kind: Some(kind),
    }
}

#[cfg(test)]
mod tests;
