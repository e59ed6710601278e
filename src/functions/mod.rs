//! Functions as this webhook reads them: the objects the cluster source caches, and the
//! variables a Function reads ([`variables`]). Where Functions come from is [`crate::sources`].

pub mod variables;

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::rules::{Container, Function};
use crate::sources::{self, cluster::Cached, Referent, Source};
use crate::stash::{STASH_GROUP, STASH_VERSION};

pub use crate::sources::{CatalogError, FileSource};

/// Functions from the Kubernetes API (see [`sources::ClusterSource`]).
pub type ClusterSource = sources::ClusterSource<FunctionObject>;

/// Answers "what is Function NAME?" for the rules: any source of Functions.
pub trait FunctionSource: Source<Function> {}

impl<S: Source<Function> + ?Sized> FunctionSource for S {}

impl Referent for Function {
    const KIND: &'static str = "Function";
    const PLURAL: &'static str = "functions";

    /// Only a usable Function: one that cannot run is looked up live before it denies.
    fn answers_from_cache(&self) -> bool {
        self.container == Container::Valid
    }
}

/// Every Function in the cluster, by name: one LIST, no watch (for `check --cluster`).
pub async fn list_functions(
    client: kube::Client,
) -> Result<std::collections::HashMap<String, Arc<Function>>, String> {
    sources::list::<FunctionObject>(client).await
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

impl Cached for FunctionObject {
    type Referent = Function;
    fn into_referent(self) -> (Option<String>, Arc<Function>) {
        (self.metadata.name, self.function)
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
