//! Where the rules learn what a named referent is: a Function (for executors and Task steps) or a
//! Task (for `spec.task`). One shape for every referent: [`ClusterSource`] (a watch-backed cache
//! over the Kubernetes API, with a live GET to confirm every would-be denial) and [`FileSource`]
//! (a catalog file of Functions and Tasks, for running without a cluster).

pub mod cluster;
mod file;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::rules::Resolution;

pub use cluster::{
    list, list_pages, not_served, watch_not_served, ClusterSource, Object, SpecObject,
};
pub use file::{Catalog, CatalogError, FileSource};

/// A kind of object that Stash objects name, as the rules know it.
pub trait Referent: fmt::Debug + Clone + Send + Sync + 'static {
    /// The API group and version its objects are served at.
    const GROUP: &'static str;
    const VERSION: &'static str;
    /// The kind, as messages name it (`Function`).
    const KIND: &'static str;
    /// The resource, as RBAC and API paths name it (`functions`).
    const PLURAL: &'static str;
    /// The resource as metrics label it: the plural for Stash's referents (`functions`), the
    /// plural and group for another family's (`functions.addons.kubestash.com`), so the two
    /// families' Functions are told apart.
    const RESOURCE: &'static str = Self::PLURAL;
    /// Whether its objects live in a namespace: their names are then `NAMESPACE/NAME`.
    const NAMESPACED: bool = false;
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
    /// True once the source can answer from a complete view (file loaded, cache synced), or knows
    /// that the cluster does not serve the kind at all.
    fn is_ready(&self) -> bool;
    /// False when the cluster does not serve the kind (its CRD is not installed): names of it are
    /// then not checked, never denied.
    fn is_installed(&self) -> bool {
        true
    }
    /// What memory holds for `name`, usable or not, without a lookup: what the audit judges on
    /// each pass, confirming what it reports with [`Source::resolve`]. None without a memory.
    fn cached(&self, _name: &str) -> Option<Arc<T>> {
        None
    }
    /// What memory holds for `name`, as an answer: found, or not found.
    fn remembered(&self, name: &str) -> Resolution<T> {
        self.cached(name)
            .map_or(Resolution::NotFound, Resolution::Found)
    }
    /// Resolves when what memory holds changes; never for a memory that does not change.
    fn changed(&self) -> BoxFuture<'_, ()> {
        futures::future::pending().boxed()
    }
    /// How many referents the source holds.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
