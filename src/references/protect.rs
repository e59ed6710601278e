//! Function protection: a Function still named by a hook is not deleted, nor edited into one that
//! cannot run, unless its owner says so with an annotation.

use std::sync::Arc;
use std::time::Duration;

use kube::core::admission::Operation;
use kube::Client;

use super::index::{list_referents, ReferenceIndex, Referent};
use crate::metrics;
use crate::review::{Reply, Request, ALLOW_BREAKING_REFERENCES};
use crate::rules::{Container, FailurePolicy};
use crate::validator::{lookup_budget, Outcome};

/// How many referents a message names; the rest are counted.
const SHOWN_REFERENTS: usize = 10;

/// What a change does to a Function, as protection judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Deleted.
    Delete,
    /// Updated from a usable Function to one that cannot run a hook.
    Breaks(Container),
    /// Anything else: created, or updated without breaking it.
    Other,
}

impl Change {
    /// The change a review makes, from the old and the new object's images.
    pub fn of(operation: &Operation, old: Option<&Container>, new: Option<&Container>) -> Self {
        match (operation, old, new) {
            (Operation::Delete, _, _) => Change::Delete,
            (Operation::Update, Some(Container::Valid), Some(new)) if *new != Container::Valid => {
                Change::Breaks(new.clone())
            }
            _ => Change::Other,
        }
    }

    fn breaks(&self) -> bool {
        !matches!(self, Change::Other)
    }
}

/// The verdict on a change to Function `name`, given the hooks that name it (`referents`) and
/// whether the Function carries the annotation that allows breaking them. Pure.
pub fn judge(
    name: &str,
    change: &Change,
    new_container: Option<&Container>,
    referents: &[Referent],
    allow_breaking: bool,
) -> Reply {
    let mut warnings = Vec::new();
    if let Some(container) = new_container.filter(|c| **c != Container::Valid) {
        warnings.push(format!(
            "spec.image: Function \"{name}\" {}: a hook that names it fails until it has one (set spec.image to a container image)",
            unusable(container)
        ));
    }
    if !change.breaks() || referents.is_empty() {
        return Reply {
            warnings,
            ..Reply::allow()
        };
    }
    let what = match change {
        Change::Breaks(container) => format!(
            "spec.image: this change leaves Function \"{name}\" unable to run ({}), and it is used by {}",
            unusable(container),
            hooks(referents)
        ),
        _ => format!("Function \"{name}\" is used by {}", hooks(referents)),
    };
    if allow_breaking {
        warnings.push(format!(
            "{what}; allowed by the annotation {ALLOW_BREAKING_REFERENCES}=true: those hooks fail until they name a Function that can run"
        ));
        return Reply {
            warnings,
            ..Reply::allow()
        };
    }
    Reply {
        warnings,
        ..Reply::deny(format!(
            "{what}: change or delete them first, or annotate the Function with {ALLOW_BREAKING_REFERENCES}=true"
        ))
    }
}

/// Why a Function cannot run a hook, in a few words.
fn unusable(container: &Container) -> String {
    match container {
        Container::Valid => "can run".to_owned(),
        Container::NoImage => "has no container image".to_owned(),
        Container::ImageNotAString(found) => format!("has spec.image of the wrong type ({found})"),
        Container::InvalidImage { image, error } => {
            format!("has an invalid container image \"{image}\": {error}")
        }
    }
}

/// `3 hooks: a (spec.hooks.preBackup), b (...), ...`, at most [`SHOWN_REFERENTS`] named.
fn hooks(referents: &[Referent]) -> String {
    let shown: Vec<String> = referents
        .iter()
        .take(SHOWN_REFERENTS)
        .map(ToString::to_string)
        .collect();
    let more = referents.len().saturating_sub(SHOWN_REFERENTS);
    let rest = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let count = match referents.len() {
        1 => "1 hook".to_owned(),
        n => format!("{n} hooks"),
    };
    format!("{count}: {}{rest}", shown.join(", "))
}

/// Judges reviews of Functions (`/protect`). Without an index (Functions from a file), every
/// change is allowed: there are no objects to protect.
pub struct Protector {
    index: Option<(Arc<ReferenceIndex>, Client)>,
    on_lookup_failure: FailurePolicy,
    lookup_timeout: Duration,
}

impl Protector {
    pub fn new(
        index: Option<(Arc<ReferenceIndex>, Client)>,
        on_lookup_failure: FailurePolicy,
        lookup_timeout: Duration,
    ) -> Self {
        Protector {
            index,
            on_lookup_failure,
            lookup_timeout,
        }
    }

    /// A protector that allows every change.
    pub fn off() -> Self {
        Protector::new(None, FailurePolicy::Deny, Duration::from_secs(1))
    }

    pub async fn review(&self, req: &Request<'_>, api_server_timeout: Option<Duration>) -> Outcome {
        let allow = || Outcome {
            reply: Reply::allow(),
            verdict: metrics::Verdict::Allowed,
            judged: false,
            kind: None,
        };
        let is_function = req.kind.group == crate::stash::STASH_GROUP
            && req.kind.version == crate::stash::STASH_VERSION
            && req.kind.kind == "Function";
        if !is_function {
            return allow();
        }
        let container = |o: &Option<crate::review::Object>| {
            o.as_ref()
                .map(|o| Container::from_image(o.spec.image.as_ref()))
        };
        let (old, new) = (container(&req.old_object), container(&req.object));
        let change = Change::of(&req.operation, old.as_ref(), new.as_ref());
        // The annotation counts on what is being written; on a DELETE, on the object deleted.
        let annotated = match req.operation {
            Operation::Delete => req.old_object.as_ref(),
            _ => req.object.as_ref(),
        }
        .is_some_and(|o| o.metadata.allow_breaking_references);
        let new_container = match req.operation {
            Operation::Create | Operation::Update => new.as_ref(),
            _ => None,
        };

        let referents = match (&self.index, change.breaks()) {
            (_, false) | (None, _) => Vec::new(),
            (Some((index, client)), true) => {
                // The index may lag: trusted to allow only when synced and empty for the name;
                // anything else is confirmed with live LISTs.
                if index.is_synced() && index.referents(&req.name).is_empty() {
                    Vec::new()
                } else {
                    let budget = lookup_budget(self.lookup_timeout, api_server_timeout);
                    match tokio::time::timeout(budget, list_referents(client, &req.name)).await {
                        Ok(Ok(referents)) => referents,
                        Ok(Err(err)) => return self.unverified(&req.name, &format!("the Kubernetes API refused to list the objects that could name it ({err}); grant the webhook's ServiceAccount list on the five hook kinds")),
                        Err(_) => return self.unverified(&req.name, &format!("the Kubernetes API did not list the objects that could name it within {} ms", budget.as_millis())),
                    }
                }
            }
        };
        let reply = judge(&req.name, &change, new_container, &referents, annotated);
        let verdict = if !reply.allowed {
            metrics::Verdict::Denied
        } else if !reply.warnings.is_empty() {
            metrics::Verdict::Warned
        } else {
            metrics::Verdict::Allowed
        };
        Outcome {
            reply,
            verdict,
            judged: true,
            kind: None,
        }
    }

    /// A change whose referents could not be listed, under `--on-lookup-failure`.
    fn unverified(&self, name: &str, why: &str) -> Outcome {
        let text =
            format!("Function \"{name}\" could not be checked for hooks that name it: {why}");
        let (reply, verdict) = match self.on_lookup_failure {
            FailurePolicy::Deny => (
                Reply::deny(format!("{text}: retry once the webhook can list them")),
                metrics::Verdict::Denied,
            ),
            FailurePolicy::Allow => (
                Reply {
                    warnings: vec![format!("{text}; allowed without verification")],
                    ..Reply::allow()
                },
                metrics::Verdict::Warned,
            ),
        };
        Outcome {
            reply,
            verdict,
            judged: true,
            kind: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::references::index::ObjectKey;
    use crate::stash::StashKind;

    fn referents(n: usize) -> Vec<Referent> {
        (0..n)
            .map(|i| Referent {
                object: ObjectKey {
                    kind: StashKind::BackupConfiguration,
                    namespace: Some("demo".into()),
                    name: format!("app-{i}"),
                },
                hook: "spec.hooks.preBackup".into(),
            })
            .collect()
    }

    const ANNOTATE: &str = "change or delete them first, or annotate the Function with stash-webhook.stash.appscode.com/allow-breaking-references=true";

    #[test]
    fn deleting_a_function_in_use_is_denied_naming_its_hooks() {
        let reply = judge(
            "mysql-hook-executor",
            &Change::Delete,
            None,
            &referents(3),
            false,
        );
        assert!(!reply.allowed);
        assert_eq!(
            reply.message,
            format!("Function \"mysql-hook-executor\" is used by 3 hooks: demo/BackupConfiguration/app-0 (spec.hooks.preBackup), demo/BackupConfiguration/app-1 (spec.hooks.preBackup), demo/BackupConfiguration/app-2 (spec.hooks.preBackup): {ANNOTATE}")
        );
        let many = judge("f", &Change::Delete, None, &referents(12), false);
        assert!(many.message.starts_with("Function \"f\" is used by 12 hooks: demo/BackupConfiguration/app-0 (spec.hooks.preBackup), "));
        assert!(
            many.message
                .contains("app-9 (spec.hooks.preBackup) and 2 more: "),
            "{}",
            many.message
        );
        assert!(!many.message.contains("app-10"));
    }

    #[test]
    fn unreferenced_or_annotated_functions_may_go() {
        assert_eq!(
            judge("f", &Change::Delete, None, &[], false),
            Reply::allow()
        );
        let reply = judge("f", &Change::Delete, None, &referents(1), true);
        assert!(reply.allowed);
        assert_eq!(
            reply.warnings,
            ["Function \"f\" is used by 1 hook: demo/BackupConfiguration/app-0 (spec.hooks.preBackup); allowed by the annotation stash-webhook.stash.appscode.com/allow-breaking-references=true: those hooks fail until they name a Function that can run"]
        );
    }

    #[test]
    fn an_update_that_breaks_a_function_in_use_is_denied_other_updates_allowed() {
        let broken = Change::of(
            &Operation::Update,
            Some(&Container::Valid),
            Some(&Container::NoImage),
        );
        assert_eq!(broken, Change::Breaks(Container::NoImage));
        let reply = judge(
            "f",
            &broken,
            Some(&Container::NoImage),
            &referents(1),
            false,
        );
        assert_eq!(
            reply.message,
            format!("spec.image: this change leaves Function \"f\" unable to run (has no container image), and it is used by 1 hook: demo/BackupConfiguration/app-0 (spec.hooks.preBackup): {ANNOTATE}")
        );
        assert_eq!(
            reply.warnings,
            ["spec.image: Function \"f\" has no container image: a hook that names it fails until it has one (set spec.image to a container image)"]
        );
        let fine = Change::of(
            &Operation::Update,
            Some(&Container::Valid),
            Some(&Container::Valid),
        );
        assert_eq!(
            judge("f", &fine, Some(&Container::Valid), &referents(1), false),
            Reply::allow()
        );
        // Already broken before: not this change's doing.
        let still = Change::of(
            &Operation::Update,
            Some(&Container::NoImage),
            Some(&Container::NoImage),
        );
        assert!(judge("f", &still, Some(&Container::NoImage), &referents(1), false).allowed);
    }

    #[test]
    fn a_function_without_a_usable_image_is_created_with_a_warning() {
        let reply = judge(
            "f",
            &Change::of(&Operation::Create, None, Some(&Container::NoImage)),
            Some(&Container::NoImage),
            &[],
            false,
        );
        assert!(reply.allowed);
        assert_eq!(reply.warnings.len(), 1);
        assert!(reply.warnings[0].starts_with("spec.image: Function \"f\" has no container image"));
    }
}
