//! Tasks as this webhook reads them: the objects the cluster source caches. What the rules know of
//! a Task is [`crate::rules::tasks::Task`]; where Tasks come from is [`crate::sources`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::rules::tasks::Task;
use crate::sources::{self, Referent};
use crate::stash::{STASH_GROUP, STASH_VERSION};

/// Tasks from the Kubernetes API (see [`sources::ClusterSource`]).
pub type ClusterSource = sources::ClusterSource<Task>;

/// A Task as the cluster source reads it (see [`sources::Object`]).
pub type TaskObject = sources::Object<Task>;

impl Referent for Task {
    const GROUP: &'static str = STASH_GROUP;
    const VERSION: &'static str = STASH_VERSION;
    const KIND: &'static str = "Task";
    const PLURAL: &'static str = "tasks";

    fn from_object(object: &serde_json::Value) -> Self {
        Task::from_object(object)
    }

    /// Only a Task with steps: one without is looked up live before it denies. Its steps'
    /// Functions are looked up on their own.
    fn answers_from_cache(&self) -> bool {
        !self.steps.is_empty()
    }
}

/// Every Task in the cluster, by name: one LIST, no watch (for `check --cluster`). A cluster
/// without the Task CRD has none.
pub async fn list_tasks(client: kube::Client) -> Result<HashMap<String, Arc<Task>>, String> {
    sources::list::<Task>(client).await
}
