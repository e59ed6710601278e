//! One review, start to finish: which requests are judged, the lookups of Functions and Tasks
//! they need (under one deadline for the whole review), and the reply. Knows nothing of HTTP.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::StreamExt;
use kube::core::admission::Operation;

use crate::functions::FunctionSource;
use crate::kubestash;
use crate::metrics;
use crate::review::{Reply, Request};
use crate::rules::tasks::{self as task_rules, Task};
use crate::rules::{self, Function, Policy, Resolution, Verdict};
use crate::sources::{Referent, Source};
use crate::stash::{executor_refs, task_refs, ExecutorRef, StashKind, TaskUse};

/// How many lookups one review runs at once (a BackupBatch can name many Functions and Tasks).
const LOOKUP_CONCURRENCY: usize = 16;

/// Judges admission requests against a Function source and, when there is one, a Task source.
#[derive(Clone)]
pub struct Validator {
    source: Arc<dyn FunctionSource>,
    /// None when there is no Task source at all: Task names are then reported as not checked.
    tasks: Option<Arc<dyn Source<Task>>>,
    /// KubeStash's referents; each None when there is no source for it.
    kubestash: KubeStashSources,
    policy: Policy,
    lookup_timeout: Duration,
}

/// What one review's lookups found, by name.
#[derive(Default)]
struct Found {
    functions: HashMap<String, Resolution<Function>>,
    tasks: HashMap<String, Resolution<Task>>,
    /// The names answered from memory, which a denial must confirm.
    remembered_functions: Vec<String>,
    remembered_tasks: Vec<String>,
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
    /// The metrics label of a judged kind of another family (KubeStash).
    pub other_kind: Option<&'static str>,
}

impl Validator {
    pub fn new(
        source: Arc<dyn FunctionSource>,
        policy: impl Into<Policy>,
        lookup_timeout: Duration,
    ) -> Self {
        Validator {
            source,
            tasks: None,
            kubestash: KubeStashSources::default(),
            policy: policy.into(),
            lookup_timeout,
        }
    }

    /// Judges Task references against `tasks` too (without one, they are reported as not checked).
    pub fn with_tasks(mut self, tasks: Arc<dyn Source<Task>>) -> Self {
        self.tasks = Some(tasks);
        self
    }

    /// Judges KubeStash objects against these sources (without them, their names are reported
    /// as not checked).
    pub fn with_kubestash(mut self, sources: KubeStashSources) -> Self {
        self.kubestash = sources;
        self
    }

    pub fn source(&self) -> &Arc<dyn FunctionSource> {
        &self.source
    }

    /// True once every source can answer from a complete view.
    pub fn is_ready(&self) -> bool {
        self.source.is_ready()
            && self.tasks.as_ref().is_none_or(|t| t.is_ready())
            && self.kubestash.is_ready()
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
            other_kind: None,
        };
        if !matches!(req.operation, Operation::Create | Operation::Update) {
            return allow(false);
        }
        if let Some(kind) = kubestash::kind(&req.kind.group, &req.kind.version, &req.kind.kind) {
            return self.review_kubestash(req, kind, api_server_timeout).await;
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
        let uses = task_refs(kind, &object.spec);
        if refs.is_empty() && uses.is_empty() {
            return allow(true);
        }
        let (old_refs, old_uses) = match (&req.operation, &req.old_object) {
            (Operation::Update, Some(old)) => {
                (executor_refs(kind, &old.spec), task_refs(kind, &old.spec))
            }
            _ => (Vec::new(), Vec::new()),
        };

        let deadline = Deadline::after(self.lookup_budget(api_server_timeout));
        let mut found = Found::default();
        self.find(&refs, &uses, &mut found, deadline).await;
        let judge = |found: &Found| self.judge(kind, &refs, &old_refs, &uses, &old_uses, found);
        let mut verdict = judge(&found);
        // A cache is trusted to allow, never to deny: what it answered is looked up again, in
        // the time left, before a denial that rests on it is sent.
        if !verdict.allowed() && self.confirm(&mut found, deadline).await {
            verdict = judge(&found);
        }
        let mut outcome = answer(verdict);
        outcome.kind = Some(kind);
        outcome
    }

    /// The verdict on an object's executors and Tasks, from what the lookups found.
    fn judge(
        &self,
        kind: StashKind,
        refs: &[ExecutorRef],
        old_refs: &[ExecutorRef],
        uses: &[TaskUse],
        old_uses: &[TaskUse],
        found: &Found,
    ) -> Verdict {
        let functions = |name: &str| found.functions.get(name);
        let mut verdict = rules::judge(refs, old_refs, functions, &self.policy);
        if !uses.is_empty() {
            let tasks = |name: &str| found.tasks.get(name);
            let tasks: task_rules::TaskLookup = self.tasks.as_ref().map(|_| &tasks as _);
            verdict.extend(task_rules::judge(
                kind,
                uses,
                old_uses,
                tasks,
                functions,
                &self.policy,
            ));
        }
        verdict
    }

    /// Looks up the Tasks named and the Functions executors name, side by side, then the
    /// Functions of the found Tasks' steps that are not known yet.
    async fn find(
        &self,
        refs: &[ExecutorRef<'_>],
        uses: &[TaskUse<'_>],
        found: &mut Found,
        deadline: Deadline,
    ) {
        let source: &dyn Source<Function> = self.source.as_ref();
        let executors = resolve(source, rules::names_to_resolve(refs), deadline);
        let tasks = async {
            match &self.tasks {
                Some(tasks) => {
                    resolve(tasks.as_ref(), task_rules::names_to_resolve(uses), deadline).await
                }
                None => (HashMap::new(), Vec::new()),
            }
        };
        let ((functions, remembered), (tasks, remembered_tasks)) = futures::join!(executors, tasks);
        found.functions = functions;
        found.remembered_functions = remembered;
        found.tasks = tasks;
        found.remembered_tasks = remembered_tasks;
        let steps: Vec<&str> = step_functions(&found.tasks)
            .filter(|name| !found.functions.contains_key(*name))
            .collect();
        if !steps.is_empty() {
            let (more, remembered) = resolve(source, steps, deadline).await;
            found.functions.extend(more);
            found.remembered_functions.extend(remembered);
        }
    }

    /// Looks up live, in the time left, what was answered from memory (and the Functions of the
    /// steps of Tasks that changed meanwhile); false when nothing could have changed.
    async fn confirm(&self, found: &mut Found, deadline: Deadline) -> bool {
        let tasks_may_lag = self.tasks.as_ref().is_some_and(|t| t.memory_may_lag());
        let recheck_tasks = tasks_may_lag && !found.remembered_tasks.is_empty();
        let recheck_functions =
            self.source.memory_may_lag() && !found.remembered_functions.is_empty();
        if !(recheck_tasks || recheck_functions) {
            return false;
        }
        if let (true, Some(tasks)) = (recheck_tasks, &self.tasks) {
            let names: Vec<String> = std::mem::take(&mut found.remembered_tasks);
            let names = names.iter().map(String::as_str).collect();
            confirmed(
                &mut found.tasks,
                look_up(tasks.as_ref(), names, deadline).await,
            );
        }
        let mut names: Vec<String> = if recheck_functions {
            std::mem::take(&mut found.remembered_functions)
        } else {
            Vec::new()
        };
        // A Task read again may name Functions not yet looked up.
        names.extend(
            step_functions(&found.tasks)
                .filter(|name| !found.functions.contains_key(*name))
                .map(str::to_owned),
        );
        names.sort_unstable();
        names.dedup();
        let source: &dyn Source<Function> = self.source.as_ref();
        let names = names.iter().map(String::as_str).collect();
        confirmed(&mut found.functions, look_up(source, names, deadline).await);
        true
    }
}

/// Takes the live answers over what memory said, except a lookup that failed: it tells nothing,
/// and what the cache found usable stays trusted to allow.
fn confirmed<T>(found: &mut HashMap<String, Resolution<T>>, live: HashMap<String, Resolution<T>>) {
    for (name, answer) in live {
        let keep = matches!(answer, Resolution::Unverified(_))
            && matches!(found.get(&name), Some(Resolution::Found(_)));
        if !keep {
            found.insert(name, answer);
        }
    }
}

/// The Functions named by the steps of the Tasks found.
fn step_functions(tasks: &HashMap<String, Resolution<Task>>) -> impl Iterator<Item = &str> {
    let mut names: Vec<&str> = tasks
        .values()
        .filter_map(|r| match r {
            Resolution::Found(task) => Some(task.functions()),
            _ => None,
        })
        .flatten()
        .collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter()
}

/// What `source` says of each of `names`, and the names it answered from a memory that may lag
/// (none for a source that cannot lag: there is nothing to confirm). Names it knows in memory
/// are answered at once; the rest are looked up before `deadline`.
async fn resolve<T: Referent>(
    source: &dyn Source<T>,
    names: Vec<&str>,
    deadline: Deadline,
) -> (HashMap<String, Resolution<T>>, Vec<String>) {
    let mut found = HashMap::with_capacity(names.len());
    let mut remembered = Vec::new();
    let may_lag = source.memory_may_lag();
    let mut pending = Vec::new();
    for name in names {
        match source.resolve_now(name) {
            Some(resolution) => {
                found.insert(name.to_owned(), resolution);
                if may_lag {
                    remembered.push(name.to_owned());
                }
            }
            None => pending.push(name),
        }
    }
    if !pending.is_empty() {
        found.extend(look_up(source, pending, deadline).await);
    }
    (found, remembered)
}

/// The source's authoritative answer for each of `names`, a few at a time, all before
/// `deadline`: a name still unanswered when it passes is "could not be verified", so the review
/// is answered in time however many names it holds.
pub(crate) async fn look_up<T: Referent>(
    source: &dyn Source<T>,
    names: Vec<&str>,
    deadline: Deadline,
) -> HashMap<String, Resolution<T>> {
    let mut answered = HashMap::with_capacity(names.len());
    // Built in a loop, not by a `.map()` closure over borrowed names, which trips the compiler's
    // higher-ranked `Send` inference for the axum handler.
    let mut lookups: Vec<BoxFuture<'_, (&str, Resolution<T>)>> = Vec::new();
    for &name in &names {
        lookups.push(Box::pin(async move { (name, source.resolve(name).await) }));
    }
    let mut answers = futures::stream::iter(lookups).buffer_unordered(LOOKUP_CONCURRENCY);
    let collect = async {
        while let Some((name, resolution)) = answers.next().await {
            answered.insert(name.to_owned(), resolution);
        }
    };
    // Running out of time leaves the names not yet answered without an answer, given below.
    let _ = tokio::time::timeout_at(deadline.at.into(), collect).await;
    let budget = deadline.budget;
    for name in names {
        answered.entry(name.to_owned()).or_insert_with(|| {
            Resolution::Unverified(format!(
                "the Kubernetes API did not answer within {} ms",
                budget.as_millis()
            ))
        });
    }
    answered
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
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    pub(crate) budget: Duration,
}

impl Deadline {
    pub(crate) fn after(budget: Duration) -> Self {
        Deadline {
            at: Instant::now() + budget,
            budget,
        }
    }
}

/// A denial as kubectl shows it: `Error from server (Forbidden): ... denied the request: MESSAGE`.
fn deny(kind: StashKind, message: String) -> Outcome {
    Outcome {
        kind: Some(kind),
        ..refusal(message)
    }
}

fn refusal(message: String) -> Outcome {
    Outcome {
        reply: Reply::deny(message),
        verdict: metrics::Verdict::Denied,
        judged: true,
        kind: None,
        other_kind: None,
    }
}

/// The answer to a judged object: its denial, or allowed with its warnings.
fn answer(verdict: Verdict) -> Outcome {
    if !verdict.allowed() {
        let mut outcome = refusal(verdict.message());
        outcome.reply.warnings = verdict.capped_warnings();
        return outcome;
    }
    let mut outcome = Outcome {
        reply: Reply::allow(),
        verdict: metrics::Verdict::Allowed,
        judged: true,
        kind: None,
        other_kind: None,
    };
    if !verdict.warnings.is_empty() {
        outcome.verdict = metrics::Verdict::Warned;
        outcome.reply.warnings = verdict.capped_warnings();
    }
    outcome
}

mod kubestash_review;

pub use kubestash_review::KubeStashSources;

#[cfg(test)]
mod tests;
