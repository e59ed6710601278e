//! Functions and Tasks read once from a catalog file: the source for `--functions-file` and
//! `--dev`; and the catalog `check` builds from its inputs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use thiserror::Error;

use super::{Referent, Source};
use crate::documents::{self, Document, DocumentError};
use crate::kubestash::referents::{Addon, AddonFunction, HookTemplate};
use crate::kubestash::{ADDONS_GROUP, CORE_GROUP, VERSION as KUBESTASH_VERSION};
use crate::metrics::{LookupResult, LookupSource, Metrics};
use crate::rules::tasks::Task;
use crate::rules::{Function, Resolution};
use crate::stash::{STASH_GROUP, STASH_VERSION};

/// The referents of some files, by name: Stash's Functions and Tasks, and KubeStash's Addons,
/// Functions and HookTemplates (these by `NAMESPACE/NAME`).
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub functions: HashMap<String, Arc<Function>>,
    pub tasks: HashMap<String, Arc<Task>>,
    pub addons: HashMap<String, Arc<Addon>>,
    pub addon_functions: HashMap<String, Arc<AddonFunction>>,
    pub hook_templates: HashMap<String, Arc<HookTemplate>>,
    /// Holds every referent a cluster has (`check --cluster`): a name not in it does not exist,
    /// even of a kind of which it holds none.
    pub complete: bool,
}

/// Which referent a document is, if it is one.
enum Entry {
    Function,
    Task,
    Addon,
    AddonFunction,
    HookTemplate,
}

fn entry(doc: &Document) -> Option<Entry> {
    let (group, version) = doc.api_version().split_once('/')?;
    match (group, version, doc.kind()) {
        (STASH_GROUP, STASH_VERSION, "Function") => Some(Entry::Function),
        (STASH_GROUP, STASH_VERSION, "Task") => Some(Entry::Task),
        (ADDONS_GROUP, KUBESTASH_VERSION, "Addon") => Some(Entry::Addon),
        (ADDONS_GROUP, KUBESTASH_VERSION, "Function") => Some(Entry::AddonFunction),
        (CORE_GROUP, KUBESTASH_VERSION, "HookTemplate") => Some(Entry::HookTemplate),
        _ => None,
    }
}

impl Catalog {
    /// The Functions and Tasks among `docs`; anything else, and a referent without a name, is
    /// passed over.
    pub fn of_documents<'a>(docs: impl IntoIterator<Item = &'a Document>) -> Self {
        let mut catalog = Catalog::default();
        for doc in docs {
            // Without a name it cannot be named: nothing to add.
            let _ = catalog.add(doc);
        }
        catalog
    }

    /// Adds `doc` when it is a named Function or Task; says what else it is otherwise.
    fn add(&mut self, doc: &Document) -> Result<(), String> {
        let Some(entry) = entry(doc) else {
            return Err(format!(
                "found kind \"{}\" apiVersion \"{}\"",
                doc.kind(),
                doc.api_version()
            ));
        };
        let name = doc.meta("name");
        if name.is_empty() {
            return Err(format!("a {} has no metadata.name", doc.kind()));
        }
        let object = &doc.object;
        match entry {
            Entry::Addon => insert(&mut self.addons, name.to_owned(), object),
            Entry::AddonFunction => insert(&mut self.addon_functions, name.to_owned(), object),
            Entry::HookTemplate => {
                // A HookTemplate is namespaced; one written without a namespace is in "default",
                // where kubectl would create it.
                let namespace = match doc.meta("namespace") {
                    "" => "default",
                    namespace => namespace,
                };
                insert(
                    &mut self.hook_templates,
                    format!("{namespace}/{name}"),
                    object,
                )
            }
            Entry::Function => {
                let function = Arc::new(Function::from_object(&doc.object));
                self.functions.insert(name.to_owned(), function);
                Ok(())
            }
            Entry::Task => {
                self.tasks
                    .insert(name.to_owned(), Arc::new(Task::from_object(&doc.object)));
                Ok(())
            }
        }
    }

    /// Adds everything `other` holds, replacing what has the same name.
    pub fn extend(&mut self, other: Catalog) {
        self.functions.extend(other.functions);
        self.tasks.extend(other.tasks);
        self.addons.extend(other.addons);
        self.addon_functions.extend(other.addon_functions);
        self.hook_templates.extend(other.hook_templates);
        self.complete |= other.complete;
    }
}

fn insert<R: Referent>(
    into: &mut HashMap<String, Arc<R>>,
    name: String,
    object: &serde_json::Value,
) -> Result<(), String> {
    into.insert(name, Arc::new(R::from_object(object)));
    Ok(())
}

/// A catalog file that cannot be used; the server refuses to start with it.
#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("cannot read Functions file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Functions file {path}: document {doc} is not valid YAML or JSON: {source}")]
    Parse {
        path: PathBuf,
        doc: usize,
        source: serde_yaml_ng::Error,
    },
    #[error("Functions file {path}: document {doc}: {what}; expected kind Function or Task (apiVersion stash.appscode.com/v1beta1), Addon or Function (addons.kubestash.com/v1alpha1) or HookTemplate (core.kubestash.com/v1alpha1) with metadata.name, or a List of them")]
    NotACatalogEntry {
        path: PathBuf,
        doc: usize,
        what: String,
    },
}

/// Functions and Tasks read once from a file: the source for `--functions-file` and `--dev`.
#[derive(Debug, Default)]
pub struct FileSource {
    catalog: Catalog,
    metrics: Metrics,
}

impl FileSource {
    pub fn from_path(path: &Path, metrics: Metrics) -> Result<Self, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_text(&text, path, metrics)
    }

    /// Reads Functions and Tasks: one, several YAML documents, or a List (JSON is YAML too).
    /// Anything else in the file is refused, so that a wrong file is noticed at start.
    pub fn from_text(text: &str, origin: &Path, metrics: Metrics) -> Result<Self, CatalogError> {
        let documents = documents::read(text).map_err(|err| match err {
            DocumentError::Parse { doc, source } => CatalogError::Parse {
                path: origin.to_owned(),
                doc,
                source,
            },
            DocumentError::NoItems { doc, kind } => CatalogError::NotACatalogEntry {
                path: origin.to_owned(),
                doc,
                what: format!("{kind} has no items list"),
            },
        })?;
        let mut catalog = Catalog::default();
        for document in &documents {
            catalog
                .add(document)
                .map_err(|what| CatalogError::NotACatalogEntry {
                    path: origin.to_owned(),
                    doc: document.number,
                    what,
                })?;
        }
        metrics.set_cached(Function::RESOURCE, catalog.functions.len());
        metrics.set_cached(Task::RESOURCE, catalog.tasks.len());
        metrics.set_cached(Addon::RESOURCE, catalog.addons.len());
        metrics.set_cached(AddonFunction::RESOURCE, catalog.addon_functions.len());
        metrics.set_cached(HookTemplate::RESOURCE, catalog.hook_templates.len());
        Ok(FileSource { catalog, metrics })
    }

    /// How many Functions the file holds.
    pub fn functions_len(&self) -> usize {
        self.catalog.functions.len()
    }

    /// How many Tasks the file holds: none means Task references cannot be checked against it.
    pub fn tasks_len(&self) -> usize {
        self.catalog.tasks.len()
    }

    /// This file as the source of `T`, when it holds some: a file without any says nothing of
    /// those a cluster has, so their names are then not checked.
    pub fn source_of<T: Referent>(self: &Arc<Self>) -> Option<Arc<dyn Source<T>>>
    where
        FileSource: Source<T>,
    {
        (Source::<T>::len(self.as_ref()) > 0).then(|| self.clone() as Arc<dyn Source<T>>)
    }

    /// The catalog itself.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn lookup<T: Referent>(&self, items: &HashMap<String, Arc<T>>, name: &str) -> Resolution<T> {
        let resolution = match items.get(name) {
            Some(item) => Resolution::Found(item.clone()),
            None => Resolution::NotFound,
        };
        self.metrics.record_lookup(
            T::RESOURCE,
            LookupSource::File,
            LookupResult::of(&resolution),
        );
        resolution
    }
}

/// The same for Functions and Tasks: a file is complete and never lags.
macro_rules! file_source {
    ($referent:ty, $field:ident) => {
        impl Source<$referent> for FileSource {
            fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Resolution<$referent>> {
                futures::future::ready(self.lookup(&self.catalog.$field, name)).boxed()
            }

            fn resolve_now(&self, name: &str) -> Option<Resolution<$referent>> {
                Some(self.lookup(&self.catalog.$field, name))
            }

            fn memory_may_lag(&self) -> bool {
                false
            }

            fn is_ready(&self) -> bool {
                true
            }

            fn len(&self) -> usize {
                self.catalog.$field.len()
            }
        }
    };
}

file_source!(Function, functions);
file_source!(Task, tasks);
file_source!(Addon, addons);
file_source!(AddonFunction, addon_functions);
file_source!(HookTemplate, hook_templates);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tasks::Step;
    use crate::rules::Container;

    fn load(text: &str) -> Result<FileSource, CatalogError> {
        FileSource::from_text(text, Path::new("test.yaml"), Metrics::default())
    }

    fn function(source: &FileSource, name: &str) -> Resolution<Function> {
        Source::<Function>::resolve_now(source, name).unwrap()
    }

    #[test]
    fn reads_multi_document_yaml_and_lists_of_functions_and_tasks() {
        let source = load(
            "apiVersion: stash.appscode.com/v1beta1\nkind: Function\nmetadata: {name: a}\nspec: {image: busybox}\n---\n\
             apiVersion: v1\nkind: List\nitems:\n- {apiVersion: stash.appscode.com/v1beta1, kind: Function, metadata: {name: b}, spec: {}}\n\
             - {apiVersion: stash.appscode.com/v1beta1, kind: Task, metadata: {name: t}, spec: {steps: [{name: a, params: [{name: p, value: v}]}]}}\n---\n",
        )
        .unwrap();
        assert_eq!((source.functions_len(), source.tasks_len()), (2, 1));
        assert_eq!(function(&source, "a"), Resolution::found(Container::Valid));
        assert_eq!(
            function(&source, "b"),
            Resolution::found(Container::NoImage)
        );
        assert_eq!(function(&source, "c"), Resolution::NotFound);
        let Some(Resolution::Found(task)) = Source::<Task>::resolve_now(&source, "t") else {
            panic!("the Task is in the file");
        };
        assert_eq!(
            task.steps,
            [Step {
                function: Some("a".into()),
                params: vec!["p".into()]
            }]
        );
        assert_eq!(
            Source::<Task>::resolve_now(&source, "a"),
            Some(Resolution::NotFound)
        );
    }

    #[test]
    fn reads_json() {
        let source = load(r#"{"apiVersion":"stash.appscode.com/v1beta1","kind":"Function","metadata":{"name":"a"},"spec":{"image":"x"}}"#).unwrap();
        assert_eq!(source.functions_len(), 1);
        assert_eq!(source.tasks_len(), 0);
    }

    #[test]
    fn rejects_what_is_neither_a_function_nor_a_task() {
        let err = load("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Functions file test.yaml: document 1: found kind \"ConfigMap\" apiVersion \"v1\"; expected kind Function or Task (apiVersion stash.appscode.com/v1beta1), Addon or Function (addons.kubestash.com/v1alpha1) or HookTemplate (core.kubestash.com/v1alpha1) with metadata.name, or a List of them"
        );
        let err =
            load("apiVersion: stash.appscode.com/v1beta1\nkind: Function\nspec: {}\n").unwrap_err();
        assert!(
            err.to_string().contains("a Function has no metadata.name"),
            "{err}"
        );
        let err =
            load("apiVersion: stash.appscode.com/v1beta1\nkind: Task\nspec: {}\n").unwrap_err();
        assert!(
            err.to_string().contains("a Task has no metadata.name"),
            "{err}"
        );
        let err = load("a: [").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Functions file test.yaml: document 1 is not valid YAML or JSON"),
            "{err}"
        );
    }
}
