//! The Function source: where the rules learn whether a named Function exists and can run a hook.
//!
//! Two implementations: [`ClusterSource`] (a watch-backed cache over the Kubernetes API, with a
//! live GET to confirm every would-be denial) and [`FileSource`] (Functions read from a file, for
//! trying the webhook without a cluster).

mod cluster;
mod file;
pub mod variables;

use std::borrow::Cow;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::rules::{Function, Resolution};
use crate::stash::{STASH_GROUP, STASH_VERSION};

pub use cluster::{list_functions, ClusterSource};
pub use file::{FileSource, FunctionsFileError};

/// Answers "what is Function NAME?" for the rules.
pub trait FunctionSource: Send + Sync + 'static {
    /// The authoritative answer for one name (for a cluster, a live GET). The caller bounds the
    /// time it may take.
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Resolution>;
    /// An answer from memory, without waiting, when there is one to trust; `None` means "call
    /// [`FunctionSource::resolve`]". Most reviews are answered this way, so it must stay cheap.
    fn resolve_now(&self, _name: &str) -> Option<Resolution> {
        None
    }
    /// True when answers from memory may lag the truth (a watch cache): they are then trusted to
    /// allow, and a verdict that denies on them is confirmed with [`FunctionSource::resolve`].
    fn memory_may_lag(&self) -> bool;
    /// True once the source can answer from a complete view (file loaded, cache synced).
    fn is_ready(&self) -> bool;
    /// How many Functions the source holds.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A Function as this webhook reads it: its name and resourceVersion, and what the rules need of
/// it (image validity, the variables it reads), worked out once when it is decoded. Nothing else
/// of the object is kept, so the watch cache stays small.
#[derive(Debug, Clone)]
pub struct FunctionObject {
    pub metadata: ObjectMeta,
    pub function: Arc<Function>,
}

impl<'de> Deserialize<'de> for FunctionObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Whole, as JSON: the variables a Function reads may be anywhere in it.
        let object = Value::deserialize(d)?;
        let text = |path: &str| {
            object
                .pointer(path)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(FunctionObject {
            metadata: ObjectMeta {
                name: text("/metadata/name"),
                resource_version: text("/metadata/resourceVersion"),
                ..ObjectMeta::default()
            },
            function: Arc::new(Function::from_object(&object)),
        })
    }
}

impl kube::Resource for FunctionObject {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Function".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        STASH_GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        STASH_VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "functions".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
