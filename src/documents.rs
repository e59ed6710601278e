//! Kubernetes objects as files hold them: YAML or JSON (JSON is YAML too), one or several
//! documents, and `List`s of objects, read into JSON values.

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

/// One object of a stream, and which document of it the object came from (from 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub number: usize,
    pub object: Value,
}

impl Document {
    /// The object's `kind`, empty when it has none.
    pub fn kind(&self) -> &str {
        self.object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The object's `apiVersion`, empty when it has none.
    pub fn api_version(&self) -> &str {
        self.object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.<field>`, empty when it is not set.
    pub fn meta(&self, field: &str) -> &str {
        self.object
            .get("metadata")
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

#[derive(Debug, Error)]
pub enum DocumentError {
    #[error("document {doc} is not valid YAML or JSON: {source}")]
    Parse {
        doc: usize,
        source: serde_yaml_ng::Error,
    },
    #[error("document {doc}: {kind} has no items list")]
    NoItems { doc: usize, kind: String },
}

/// Every object in `text`: each document's, the items of a `List` in its place; empty documents
/// (a trailing `---`) are passed over.
pub fn read(text: &str) -> Result<Vec<Document>, DocumentError> {
    let mut documents = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let number = i + 1;
        let value = Value::deserialize(doc).map_err(|source| DocumentError::Parse {
            doc: number,
            source,
        })?;
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if value.is_null() {
            continue;
        }
        if kind.ends_with("List") {
            let Some(Value::Array(items)) = value.get("items") else {
                return Err(DocumentError::NoItems {
                    doc: number,
                    kind: kind.to_owned(),
                });
            };
            documents.extend(items.iter().map(|item| Document {
                number,
                object: item.clone(),
            }));
        } else {
            documents.push(Document {
                number,
                object: value,
            });
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_documents_lists_and_json() {
        let docs =
            read("a: 1\n---\n---\nkind: List\nitems: [{b: 2}, {c: 3}]\n---\n{\"d\": 4}\n").unwrap();
        let numbers: Vec<usize> = docs.iter().map(|d| d.number).collect();
        assert_eq!(numbers, [1, 3, 3, 4]);
        assert_eq!(docs[2].object, serde_json::json!({"c": 3}));
        assert_eq!(docs[3].object, serde_json::json!({"d": 4}));
    }

    #[test]
    fn says_which_document_is_wrong() {
        let err = read("a: 1\n---\nb: [\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("document 2 is not valid YAML or JSON: "),
            "{err}"
        );
        assert_eq!(
            read("kind: ConfigMapList\n").unwrap_err().to_string(),
            "document 1: ConfigMapList has no items list"
        );
    }
}
