//! Where the rules learn what a named referent is: a Function (for executors and Task steps) or a
//! Task (for `spec.task`). One shape for every referent: [`ClusterSource`] (a watch-backed cache
//! over the Kubernetes API, with a live GET to confirm every would-be denial) and [`FileSource`]
//! (a catalog file of Functions and Tasks, for running without a cluster).

pub mod cluster;
mod file;

use std::fmt;

use futures::future::BoxFuture;

use crate::rules::Resolution;

pub use cluster::{list, ClusterSource, Object};
pub use file::{Catalog, CatalogError, FileSource};

/// A kind of object that Stash objects name, as the rules know it.
pub trait Referent: fmt::Debug + Clone + Send + Sync + 'static {
    /// The API group and version its objects are served at.
    const GROUP: &'static str;
    const VERSION: &'static str;
    /// The kind, as messages name it (`Function`).
    const KIND: &'static str;
    /// The resource, as RBAC, API paths and metrics name it (`functions`).
    const PLURAL: &'static str;
    /// What the rules need of one of its objects, given as JSON, worked out once when it is read.
    fn from_object(object: &serde_json::Value) -> Self;
    /// Whether a cached copy may answer a review by itself: one that could lead to a denial is
    /// looked up live instead.
    fn answers_from_cache(&self) -> bool;
}

/// Answers "what is the referent NAME?" for the rules.
pub trait Source<T: Referent>: Send + Sync + 'static {
    /// The authoritative answer for one name (for a cluster, a live GET). The caller bounds the
    /// time it may take.
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Resolution<T>>;
    /// An answer from memory, without waiting, when there is one to trust; `None` means "call
    /// [`Source::resolve`]". Most reviews are answered this way, so it must stay cheap.
    fn resolve_now(&self, _name: &str) -> Option<Resolution<T>> {
        None
    }
    /// True when answers from memory may lag the truth (a watch cache): they are then trusted to
    /// allow, and a verdict that denies on them is confirmed with [`Source::resolve`].
    fn memory_may_lag(&self) -> bool;
    /// True once the source can answer from a complete view (file loaded, cache synced).
    fn is_ready(&self) -> bool;
    /// How many referents the source holds.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
