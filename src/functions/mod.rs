//! The Function source: where the rules learn whether a named Function exists and can run a hook.
//!
//! Two implementations: [`ClusterSource`] (a watch-backed cache over the Kubernetes API, with a
//! live GET to confirm every would-be denial) and [`FileSource`] (Functions read from a file, for
//! trying the webhook without a cluster).

mod cluster;
mod file;

use std::borrow::Cow;

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::rules::{Container, Resolution};
use crate::stash::{STASH_GROUP, STASH_VERSION};

pub use cluster::ClusterSource;
pub use file::{FileSource, FunctionsFileError};

/// Answers "what is Function NAME?" for the rules.
pub trait FunctionSource: Send + Sync + 'static {
    /// Resolves one Function name. The caller bounds the time it may take.
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Resolution>;
    /// Answers from memory when the answer is final, without waiting; `None` means "call
    /// [`FunctionSource::resolve`]". Most reviews are answered this way, so it must stay cheap.
    fn resolve_now(&self, _name: &str) -> Option<Resolution> {
        None
    }
    /// True once the source can answer from a complete view (file loaded, cache synced).
    fn is_ready(&self) -> bool;
    /// How many Functions the source holds.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A Function as this webhook reads it: its name, resourceVersion and image, nothing else.
/// Decoding only these fields keeps the watch cheap and the cache small.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionObject {
    #[serde(deserialize_with = "slim_meta", default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: FunctionSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FunctionSpec {
    /// Kept as raw JSON so a Function with a malformed image is reported, not dropped from the watch.
    #[serde(default)]
    pub image: Option<Value>,
}

impl FunctionObject {
    pub fn container(&self) -> Container {
        Container::from_image(self.spec.image.as_ref())
    }
}

fn slim_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Slim {
        name: Option<String>,
        resource_version: Option<String>,
    }
    let slim = Slim::deserialize(d)?;
    Ok(ObjectMeta {
        name: slim.name,
        resource_version: slim.resource_version,
        ..ObjectMeta::default()
    })
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
