//! Functions as this webhook reads them: the objects the cluster source caches, and the
//! variables a Function reads ([`variables`]). Where Functions come from is [`crate::sources`].

pub mod variables;

use std::sync::Arc;

use crate::rules::{Container, Function};
use crate::sources::{self, Referent, Source};
use crate::stash::{STASH_GROUP, STASH_VERSION};

pub use crate::sources::{CatalogError, FileSource};

/// Functions from the Kubernetes API (see [`sources::ClusterSource`]).
pub type ClusterSource = sources::ClusterSource<Function>;

/// A Function as the cluster source reads it (see [`sources::Object`]).
pub type FunctionObject = sources::Object<Function>;

/// Answers "what is Function NAME?" for the rules: any source of Functions.
pub trait FunctionSource: Source<Function> {}

impl<S: Source<Function> + ?Sized> FunctionSource for S {}

impl Referent for Function {
    const GROUP: &'static str = STASH_GROUP;
    const VERSION: &'static str = STASH_VERSION;
    const KIND: &'static str = "Function";
    const PLURAL: &'static str = "functions";

    fn from_object(object: &serde_json::Value) -> Self {
        Function::from_object(object)
    }

    /// Only a usable Function: one that cannot run is looked up live before it denies.
    fn answers_from_cache(&self) -> bool {
        self.container == Container::Valid
    }
}

/// Every Function in the cluster, by name: one LIST, no watch (for `check --cluster`).
pub async fn list_functions(
    client: kube::Client,
) -> Result<std::collections::HashMap<String, Arc<Function>>, String> {
    sources::list::<Function>(client).await
}
