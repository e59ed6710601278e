//! One review, start to finish: which requests are judged, the Function lookups they need (under
//! one deadline for the whole review), and the reply. Knows nothing of HTTP.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::StreamExt;
use kube::core::admission::Operation;

use crate::functions::FunctionSource;
use crate::metrics;
use crate::review::{Reply, Request};
use crate::rules::{self, Policy, Resolution};
use crate::stash::{executor_refs, StashKind};

/// How many Function lookups one review runs at once (a BackupBatch can name many Functions).
const LOOKUP_CONCURRENCY: usize = 16;

/// Judges admission requests against a Function source.
#[derive(Clone)]
pub struct Validator {
    source: Arc<dyn FunctionSource>,
    policy: Policy,
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
        policy: impl Into<Policy>,
        lookup_timeout: Duration,
    ) -> Self {
        Validator {
            source,
            policy: policy.into(),
            lookup_timeout,
        }
    }

    pub fn source(&self) -> &Arc<dyn FunctionSource> {
        &self.source
    }

    /// The time allowed for this validator's lookups (see [`lookup_budget`]).
    pub fn lookup_budget(&self, api_server_timeout: Option<Duration>) -> Duration {
        lookup_budget(self.lookup_timeout, api_server_timeout)
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

        let deadline = Deadline::after(self.lookup_budget(api_server_timeout));
        let names = rules::names_to_resolve(&refs);
        let (mut resolutions, remembered) = self.resolve(names, deadline).await;
        let judge = |resolutions: &HashMap<&str, Resolution>| {
            rules::judge(&refs, &old_refs, |name| resolutions.get(name), &self.policy)
        };
        let mut verdict = judge(&resolutions);
        // A cache is trusted to allow, never to deny: what it answered is looked up again, in
        // the time left, before a denial that rests on it is sent.
        if !verdict.allowed() && self.source.memory_may_lag() && !remembered.is_empty() {
            resolutions.extend(self.look_up(remembered, deadline).await);
            verdict = judge(&resolutions);
        }
        if !verdict.allowed() {
            let mut outcome = deny(kind, verdict.message());
            outcome.reply.warnings = verdict.capped_warnings();
            return outcome;
        }
        let mut outcome = allow(true);
        if !verdict.warnings.is_empty() {
            outcome.verdict = metrics::Verdict::Warned;
            outcome.reply.warnings = verdict.capped_warnings();
        }
        outcome
    }
}

impl Validator {
    /// What the source says of each of `names`, and which of them it answered from memory.
    /// Names it knows in memory are answered at once; the rest are looked up before `deadline`.
    async fn resolve<'a>(
        &self,
        names: Vec<&'a str>,
        deadline: Deadline,
    ) -> (HashMap<&'a str, Resolution>, Vec<&'a str>) {
        let mut resolutions = HashMap::with_capacity(names.len());
        let mut remembered = Vec::new();
        let mut pending = Vec::new();
        for name in names {
            match self.source.resolve_now(name) {
                Some(resolution) => {
                    resolutions.insert(name, resolution);
                    remembered.push(name);
                }
                None => pending.push(name),
            }
        }
        if !pending.is_empty() {
            resolutions.extend(self.look_up(pending, deadline).await);
        }
        (resolutions, remembered)
    }

    /// The source's authoritative answer for each of `names`, a few at a time, all before
    /// `deadline`: a name still unanswered when it passes is "could not be verified", so the
    /// review is answered in time however many names it holds.
    async fn look_up<'a>(
        &self,
        names: Vec<&'a str>,
        deadline: Deadline,
    ) -> HashMap<&'a str, Resolution> {
        let mut answered = HashMap::with_capacity(names.len());
        // Built in a loop, not by a `.map()` closure over borrowed names, which trips the
        // compiler's higher-ranked `Send` inference for the axum handler.
        let mut lookups: Vec<BoxFuture<'_, (&str, Resolution)>> = Vec::new();
        for &name in &names {
            let source = &self.source;
            lookups.push(Box::pin(async move { (name, source.resolve(name).await) }));
        }
        let mut answers = futures::stream::iter(lookups).buffer_unordered(LOOKUP_CONCURRENCY);
        let collect = async {
            while let Some((name, resolution)) = answers.next().await {
                answered.insert(name, resolution);
            }
        };
        // Running out of time leaves the names not yet answered without an answer, given below.
        let _ = tokio::time::timeout_at(deadline.at.into(), collect).await;
        let budget = deadline.budget;
        for name in names {
            answered.entry(name).or_insert_with(|| {
                Resolution::Unverified(format!(
                    "the Kubernetes API did not answer within {} ms",
                    budget.as_millis()
                ))
            });
        }
        answered
    }
}

/// The time allowed for one review's lookups: `lookup_timeout`, but never more than half of what
/// the API server said it will wait (`?timeout=`), so the answer always arrives in time.
pub fn lookup_budget(lookup_timeout: Duration, api_server_timeout: Option<Duration>) -> Duration {
    match api_server_timeout {
        Some(t) => lookup_timeout.min(t / 2),
        None => lookup_timeout,
    }
}

/// When one review's lookups must be done by, and the budget that set it (for messages).
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    fn after(budget: Duration) -> Self {
        Deadline {
            at: Instant::now() + budget,
            budget,
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
