//! Functions read once from a file: the source for `--functions-file` and `--dev`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use futures::FutureExt;
use thiserror::Error;

use super::FunctionSource;
use crate::documents::{self, DocumentError};
use crate::metrics::{LookupResult, LookupSource, Metrics};
use crate::rules::{Function, Resolution};
use std::sync::Arc;

/// Functions read once from a file: the source for `--functions-file` and `--dev`.
#[derive(Debug, Default)]
pub struct FileSource {
    functions: HashMap<String, Arc<Function>>,
    metrics: Metrics,
}

/// A Functions file that cannot be used; the server refuses to start with it.
#[derive(Debug, Error)]
pub enum FunctionsFileError {
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
    #[error("Functions file {path}: document {doc}: {what}; expected kind Function (apiVersion stash.appscode.com/v1beta1) with metadata.name, or a List of them")]
    NotAFunction {
        path: PathBuf,
        doc: usize,
        what: String,
    },
}

impl FileSource {
    pub fn from_path(path: &Path, metrics: Metrics) -> Result<Self, FunctionsFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FunctionsFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_text(&text, path, metrics)
    }

    /// Reads one Function, several YAML documents, or a List (JSON is YAML too).
    pub fn from_text(
        text: &str,
        origin: &Path,
        metrics: Metrics,
    ) -> Result<Self, FunctionsFileError> {
        let documents = documents::read(text).map_err(|err| match err {
            DocumentError::Parse { doc, source } => FunctionsFileError::Parse {
                path: origin.to_owned(),
                doc,
                source,
            },
            DocumentError::NoItems { doc, kind } => FunctionsFileError::NotAFunction {
                path: origin.to_owned(),
                doc,
                what: format!("{kind} has no items list"),
            },
        })?;
        let mut functions = HashMap::new();
        for document in documents {
            let not_a_function = |what: String| FunctionsFileError::NotAFunction {
                path: origin.to_owned(),
                doc: document.number,
                what,
            };
            let (kind, api_version) = (document.kind(), document.api_version());
            if kind != "Function" || api_version != "stash.appscode.com/v1beta1" {
                return Err(not_a_function(format!(
                    "found kind \"{kind}\" apiVersion \"{api_version}\""
                )));
            }
            let name = document.meta("name");
            if name.is_empty() {
                return Err(not_a_function("a Function has no metadata.name".into()));
            }
            functions.insert(
                name.to_owned(),
                Arc::new(Function::from_object(&document.object)),
            );
        }
        metrics.set_cached_functions(functions.len());
        Ok(FileSource { functions, metrics })
    }
}

impl FileSource {
    fn lookup(&self, name: &str) -> Resolution {
        let resolution = match self.functions.get(name) {
            Some(function) => Resolution::Found(function.clone()),
            None => Resolution::NotFound,
        };
        self.metrics
            .record_lookup(LookupSource::File, LookupResult::of(&resolution));
        resolution
    }
}

impl FunctionSource for FileSource {
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Resolution> {
        futures::future::ready(self.lookup(name)).boxed()
    }

    fn resolve_now(&self, name: &str) -> Option<Resolution> {
        Some(self.lookup(name))
    }

    fn memory_may_lag(&self) -> bool {
        false
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn len(&self) -> usize {
        self.functions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Container;

    fn load(text: &str) -> Result<FileSource, FunctionsFileError> {
        FileSource::from_text(text, Path::new("test.yaml"), Metrics::default())
    }

    #[tokio::test]
    async fn reads_multi_document_yaml_and_lists() {
        let source = load(
            "apiVersion: stash.appscode.com/v1beta1\nkind: Function\nmetadata: {name: a}\nspec: {image: busybox}\n---\n\
             apiVersion: v1\nkind: List\nitems:\n- {apiVersion: stash.appscode.com/v1beta1, kind: Function, metadata: {name: b}, spec: {}}\n---\n",
        )
        .unwrap();
        assert_eq!(source.len(), 2);
        assert_eq!(
            source.resolve("a").await,
            Resolution::found(Container::Valid)
        );
        assert_eq!(
            source.resolve("b").await,
            Resolution::found(Container::NoImage)
        );
        assert_eq!(source.resolve("c").await, Resolution::NotFound);
    }

    #[test]
    fn reads_json() {
        let source = load(r#"{"apiVersion":"stash.appscode.com/v1beta1","kind":"Function","metadata":{"name":"a"},"spec":{"image":"x"}}"#).unwrap();
        assert_eq!(source.len(), 1);
    }

    #[test]
    fn rejects_what_is_not_a_function() {
        let err = load("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Functions file test.yaml: document 1: found kind \"ConfigMap\" apiVersion \"v1\"; expected kind Function (apiVersion stash.appscode.com/v1beta1) with metadata.name, or a List of them"
        );
        let err =
            load("apiVersion: stash.appscode.com/v1beta1\nkind: Function\nspec: {}\n").unwrap_err();
        assert!(
            err.to_string().contains("a Function has no metadata.name"),
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
