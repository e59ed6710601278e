//! Tasks as this webhook reads them: the objects the cluster source caches. What the rules know of
//! a Task is [`crate::rules::tasks::Task`]; where Tasks come from is [`crate::sources`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::rules::tasks::Task;
use crate::sources::{self, cluster::Cached, Referent};
use crate::stash::{STASH_GROUP, STASH_VERSION};

/// Tasks from the Kubernetes API (see [`sources::ClusterSource`]).
pub type ClusterSource = sources::ClusterSource<TaskObject>;

impl Referent for Task {
    const KIND: &'static str = "Task";
    const PLURAL: &'static str = "tasks";

    /// Only a Task with steps: one without is looked up live before it denies. Its steps'
    /// Functions are looked up on their own.
    fn answers_from_cache(&self) -> bool {
        !self.steps.is_empty()
    }
}

/// Every Task in the cluster, by name: one LIST, no watch (for `check --cluster`). A cluster
/// without the Task CRD has none.
pub async fn list_tasks(client: kube::Client) -> Result<HashMap<String, Arc<Task>>, String> {
    sources::list::<TaskObject>(client).await
}

/// A Task as this webhook reads it: its name and resourceVersion, and what the rules need of it,
/// worked out once when it is decoded.
#[derive(Debug, Clone)]
pub struct TaskObject {
    pub metadata: ObjectMeta,
    pub task: Arc<Task>,
}

impl<'de> Deserialize<'de> for TaskObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Whole, as JSON: the variables a Task reads may be anywhere in it.
        let object = Value::deserialize(d)?;
        let text = |path: &str| {
            object
                .pointer(path)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(TaskObject {
            metadata: ObjectMeta {
                name: text("/metadata/name"),
                resource_version: text("/metadata/resourceVersion"),
                ..ObjectMeta::default()
            },
            task: Arc::new(Task::from_object(&object)),
        })
    }
}

impl Cached for TaskObject {
    type Referent = Task;
    fn into_referent(self) -> (Option<String>, Arc<Task>) {
        (self.metadata.name, self.task)
    }
}

impl kube::Resource for TaskObject {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Task".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        STASH_GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        STASH_VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "tasks".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
