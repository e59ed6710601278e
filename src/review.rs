//! The AdmissionReview wire format: decoding what the API server POSTs, encoding the answer in
//! the same `admission.k8s.io` version it was asked in.
//!
//! A review carries the object twice (`object`, `oldObject`), and each copy again in its
//! last-applied annotation and managedFields; only the fields below are read, everything else is
//! skipped by serde without being built. Strings without escapes are borrowed from the body.

use std::borrow::Cow;

use kube::core::admission::{AdmissionResponse, Operation};
use kube::core::Status;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::stash::SpecHooks;

pub const V1: &str = "admission.k8s.io/v1";
pub const V1BETA1: &str = "admission.k8s.io/v1beta1";

/// The `admission.k8s.io` version of a review; the answer must use the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewVersion {
    V1,
    V1Beta1,
}

impl ReviewVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            ReviewVersion::V1 => V1,
            ReviewVersion::V1Beta1 => V1BETA1,
        }
    }
}

/// Why a body is not a review this server can answer. Each maps to a 400 with this text.
#[derive(Debug, Error)]
pub enum ReviewError {
    #[error("the body is empty: POST an AdmissionReview (admission.k8s.io/v1 or v1beta1) as JSON")]
    Empty,
    #[error("the body is not a JSON object: POST an AdmissionReview (admission.k8s.io/v1 or v1beta1) as JSON")]
    NotAnObject,
    #[error("the body is not a valid AdmissionReview: invalid UTF-8 at byte {0}")]
    Utf8(usize),
    /// serde_json's reason and where in the body (`invalid type: integer `3`, expected a string
    /// at line 1 column 79`). The body is parsed once, without tracking the path of each field:
    /// that costs every review, for the sake of bodies the API server never sends.
    #[error("the body is not a valid AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    #[error("kind is {0:?}: expected \"AdmissionReview\"")]
    Kind(String),
    #[error("apiVersion {0:?} is not supported: use \"admission.k8s.io/v1\" or \"admission.k8s.io/v1beta1\"")]
    Version(String),
    #[error("the AdmissionReview has no request: the API server sends one in every call")]
    NoRequest,
}

/// The envelope: its types, and the request.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    request: Option<Request<'a>>,
}

/// The group, version and kind of the object under review.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Gvk<'a> {
    #[serde(default, borrow)]
    pub group: Cow<'a, str>,
    #[serde(default, borrow)]
    pub version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

/// The request fields this server uses, borrowed from the body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Gvk<'a>,
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub object: Option<Object>,
    #[serde(default)]
    pub old_object: Option<Object>,
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// The whole body, for kinds whose objects are read whole ([`whole_objects`]).
    #[serde(skip)]
    pub body: &'a [u8],
}

impl Request<'_> {
    pub fn dry_run(&self) -> bool {
        self.dry_run.unwrap_or(false)
    }
}

/// An object as the rules read it: of its metadata the one annotation this webhook honours; of
/// its spec only `hooks`, `task`, the `hooks` and `task` of each of `members`, `image` and `steps`,
/// and of each hook only `executor`.
#[derive(Debug, Default, Deserialize)]
pub struct Object {
    #[serde(default)]
    pub metadata: Metadata,
    /// Empty when the object has no spec, or a spec that is not a map.
    #[serde(default, deserialize_with = "crate::stash::spec_hooks")]
    pub spec: SpecHooks,
}

/// The annotation on a Function or a Task that lets a change break the objects using it.
pub const ALLOW_BREAKING_REFERENCES: &str =
    "stash-webhook.stash.appscode.com/allow-breaking-references";

/// What the rules read of an object's metadata.
#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    /// `ALLOW_BREAKING_REFERENCES: "true"` is set.
    #[serde(default, rename = "annotations", deserialize_with = "allows_breaking")]
    pub allow_breaking_references: bool,
}

/// Reads `metadata.annotations` for [`ALLOW_BREAKING_REFERENCES`] alone: the other annotations
/// (a last-applied configuration can be the whole object again) are skipped unread.
fn allows_breaking<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct Annotations;
    impl<'de> serde::de::Visitor<'de> for Annotations {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of annotations")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut allowed = false;
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if key == ALLOW_BREAKING_REFERENCES {
                    allowed = map.next_value::<Option<Cow<'de, str>>>()?.as_deref() == Some("true");
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(allowed)
        }
    }
    d.deserialize_any(Annotations)
}

/// Decodes an AdmissionReview body into its version and request, borrowing from `body`.
pub fn decode(body: &[u8]) -> Result<(ReviewVersion, Request<'_>), ReviewError> {
    // JSON is UTF-8: refused wherever the bad byte is, not only in the strings that are read.
    let text = std::str::from_utf8(body).map_err(|e| ReviewError::Utf8(e.valid_up_to()))?;
    match text.trim_start().as_bytes().first() {
        None => return Err(ReviewError::Empty),
        Some(b'{') => {}
        Some(_) => return Err(ReviewError::NotAnObject),
    }
    let mut json = serde_json::Deserializer::from_str(text);
    let envelope = Envelope::deserialize(&mut json)?;
    json.end()?;
    let kind = envelope.kind.unwrap_or_default();
    if kind != "AdmissionReview" {
        return Err(ReviewError::Kind(kind.into_owned()));
    }
    let version = match envelope.api_version.as_deref() {
        Some(V1) => ReviewVersion::V1,
        Some(V1BETA1) => ReviewVersion::V1Beta1,
        other => return Err(ReviewError::Version(other.unwrap_or_default().to_owned())),
    };
    let mut request = envelope.request.ok_or(ReviewError::NoRequest)?;
    request.body = body;
    Ok((version, request))
}

/// The request's `object` and `oldObject`, whole, as JSON: a second read of a body [`decode`]
/// accepted, for the KubeStash kinds, whose references are found by walking the object
/// ([`crate::kubestash::references`]); Stash's kinds keep their one read of what they need.
pub fn whole_objects(body: &[u8]) -> Result<(Option<Value>, Option<Value>), ReviewError> {
    #[derive(Deserialize)]
    struct Whole {
        #[serde(default)]
        request: Option<WholeRequest>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct WholeRequest {
        #[serde(default)]
        object: Option<Value>,
        #[serde(default)]
        old_object: Option<Value>,
    }
    let whole: Whole = serde_json::from_slice(body)?;
    Ok(whole
        .request
        .map_or((None, None), |r| (r.object, r.old_object)))
}

/// What this server answers a review: allowed, or denied with a message, and any warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub allowed: bool,
    /// Why the request is denied, as kubectl shows it after `denied the request: `; empty when
    /// allowed.
    pub message: String,
    /// Shown by kubectl as `Warning: ...`, each on its own line.
    pub warnings: Vec<String>,
}

impl Reply {
    pub fn allow() -> Self {
        Reply {
            allowed: true,
            message: String::new(),
            warnings: Vec::new(),
        }
    }

    /// Allowed, with these warnings (kubectl prints each as `Warning: ...`).
    pub fn warn(warnings: Vec<String>) -> Self {
        Reply {
            warnings,
            ..Reply::allow()
        }
    }

    pub fn deny(message: String) -> Self {
        Reply {
            allowed: false,
            message,
            warnings: Vec::new(),
        }
    }

    /// kube's `AdmissionResponse` for this reply to the request `uid`: a denial is a 403
    /// `Failure` with reason `Forbidden`, which kubectl prints as
    /// `Error from server (Forbidden): ... denied the request: MESSAGE`.
    pub fn into_response(self, uid: &str) -> AdmissionResponse {
        // `AdmissionResponse::from` needs kube's request type, which would decode whole objects;
        // `invalid` is the one public constructor that takes none, and every field it sets is
        // overwritten here.
        let mut response = AdmissionResponse::invalid("");
        response.uid = uid.to_owned();
        response.allowed = self.allowed;
        response.result = if self.allowed {
            Status::default()
        } else {
            Status::failure(&self.message, "Forbidden").with_code(403)
        };
        if !self.warnings.is_empty() {
            response.warnings = Some(self.warnings);
        }
        response
    }
}

/// What is sent back: the AdmissionReview envelope around kube's response.
#[derive(Serialize)]
struct Answer {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: AdmissionResponse,
}

/// Encodes `reply` to the request `uid` as an AdmissionReview of `version`.
pub fn encode(
    version: ReviewVersion,
    uid: &str,
    reply: Reply,
) -> Result<Vec<u8>, serde_json::Error> {
    // One buffer the answer fits in (an allowed one is about 150 bytes besides its uid), so
    // that it is not grown and copied on the way.
    let texts = reply.message.len() + reply.warnings.iter().map(String::len).sum::<usize>();
    let mut out = Vec::with_capacity(256 + uid.len() + texts + texts / 8);
    serde_json::to_writer(
        &mut out,
        &Answer {
            api_version: version.api_version(),
            kind: "AdmissionReview",
            response: reply.into_response(uid),
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: &str = include_str!("../tests/fixtures/reviews/backupconfiguration-create.json");

    #[test]
    fn decodes_a_recorded_review() {
        let (version, req) = decode(CREATE.as_bytes()).unwrap();
        assert_eq!(version, ReviewVersion::V1);
        assert_eq!(req.uid, "2f4654dc-4eb5-4f5c-99a7-7fac85a06744");
        assert_eq!(req.kind.kind, "BackupConfiguration");
        assert_eq!(req.operation, Operation::Create);
        assert_eq!(req.namespace.as_deref(), Some("demo"));
        assert!(!req.dry_run());
        let spec = req.object.unwrap().spec;
        assert_eq!(
            spec.hooks.pre_backup,
            Some(crate::stash::Executor::Ref {
                function: crate::stash::Name::Named("mysql-hook-executor".into()),
                params: crate::stash::Params::Keys(vec!["a".into(), "c".into()]),
            })
        );
    }

    #[test]
    fn an_allow_is_a_bare_response() {
        let out: serde_json::Value =
            serde_json::from_slice(&encode(ReviewVersion::V1, "u-1", Reply::allow()).unwrap())
                .unwrap();
        assert_eq!(
            out,
            serde_json::json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": "u-1", "allowed": true, "status": {}}
            })
        );
    }

    #[test]
    fn a_denial_is_a_403_forbidden_failure_with_its_warnings() {
        let reply = Reply {
            warnings: vec!["w1".into(), "w2".into()],
            ..Reply::deny("spec.hooks.preBackup.executor.functionName: no".into())
        };
        let out: serde_json::Value =
            serde_json::from_slice(&encode(ReviewVersion::V1, "u-1", reply).unwrap()).unwrap();
        assert_eq!(
            out["response"],
            serde_json::json!({
                "uid": "u-1",
                "allowed": false,
                "status": {
                    "status": "Failure",
                    "code": 403,
                    "reason": "Forbidden",
                    "message": "spec.hooks.preBackup.executor.functionName: no"
                },
                "warnings": ["w1", "w2"]
            })
        );
        // Without warnings, no `warnings` field at all.
        let out: serde_json::Value = serde_json::from_slice(
            &encode(ReviewVersion::V1, "u-1", Reply::deny("no".into())).unwrap(),
        )
        .unwrap();
        assert_eq!(out["response"]["allowed"], false);
        assert_eq!(out["response"]["status"]["message"], "no");
        assert!(out["response"].get("warnings").is_none(), "{out}");
    }

    #[test]
    fn answers_in_the_version_asked() {
        let body = CREATE.replace(V1, V1BETA1);
        let (version, req) = decode(body.as_bytes()).unwrap();
        assert_eq!(version, ReviewVersion::V1Beta1);
        let out: serde_json::Value =
            serde_json::from_slice(&encode(version, &req.uid, Reply::allow()).unwrap()).unwrap();
        assert_eq!(out["apiVersion"], V1BETA1);
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(
            out["response"]["uid"],
            "2f4654dc-4eb5-4f5c-99a7-7fac85a06744"
        );
        assert_eq!(out["response"]["allowed"], true);
    }

    #[test]
    fn keeps_only_executors_of_the_hooks_of_the_spec_and_of_each_member() {
        use crate::stash::{Executor, Hooks, Member, Name, Params, SpecHooks, TaskParams, TaskRef};
        let body = serde_json::json!({"apiVersion": V1, "kind": "AdmissionReview", "request": {
            "uid": "u", "kind": {"group": "stash.appscode.com", "version": "v1beta1", "kind": "BackupBatch"},
            "resource": {"group": "stash.appscode.com", "version": "v1beta1", "resource": "backupbatches"},
            "operation": "CREATE", "userInfo": {"username": "u"},
            "object": {"apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupBatch",
                "metadata": {"name": "b", "namespace": "demo", "annotations": {"a": "b"}, "managedFields": [{}]},
                "spec": {"schedule": "* * * * *", "hooks": {"preBackup": {"exec": ["/bin/true"]},
                                                            "postBackup": {"exec": {"command": ["/bin/sh"]}, "executor": {"functionName": "f", "params": {"a": "b"}}},
                                                            "preRestore": "not a map"},
                         "members": [{"target": {}, "hooks": {"postBackup": {}}}, "not a map",
                                     {"target": {}, "task": {"name": "t", "params": [{"name": "p", "value": "v"}, {"value": "x"}]}}]}},
            "oldObject": {"metadata": {"name": "b"}, "spec": "not a map"}
        }});
        let text = body.to_string();
        let (_, req) = decode(text.as_bytes()).unwrap();
        let object = req.object.unwrap();
        assert_eq!(
            object.spec,
            SpecHooks {
                hooks: Hooks {
                    post_backup: Some(Executor::Ref {
                        function: Name::Named("f".to_owned()),
                        params: Params::Keys(vec!["a".to_owned()])
                    }),
                    ..Hooks::default()
                },
                members: vec![
                    Member::default(),
                    Member::default(),
                    Member {
                        task: Some(TaskRef {
                            name: Name::Named("t".to_owned()),
                            params: TaskParams::Names(vec![Some("p".to_owned()), None]),
                        }),
                        ..Member::default()
                    }
                ],
                task: None,
                image: None,
                steps: None,
            }
        );
        assert_eq!(req.old_object.unwrap().spec, SpecHooks::default());
    }

    #[test]
    fn borrows_plain_strings_and_unescapes_the_others() {
        let body = CREATE.replace(
            r#""uid":"2f4654dc-4eb5-4f5c-99a7-7fac85a06744""#,
            r#""uid":"2f4654dc\u002d4eb5""#,
        );
        assert_ne!(body, CREATE, "the fixture has the uid this test rewrites");
        let (_, req) = decode(body.as_bytes()).unwrap();
        assert_eq!(req.uid, "2f4654dc-4eb5");
        assert!(matches!(req.uid, Cow::Owned(_)));
        assert!(matches!(
            req.kind.kind,
            Cow::Borrowed("BackupConfiguration")
        ));
    }

    #[test]
    fn explains_bad_bodies() {
        let msg = |b: &str| decode(b.as_bytes()).map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            msg(""),
            "the body is empty: POST an AdmissionReview (admission.k8s.io/v1 or v1beta1) as JSON"
        );
        assert_eq!(
            msg(" \n"),
            "the body is empty: POST an AdmissionReview (admission.k8s.io/v1 or v1beta1) as JSON"
        );
        assert_eq!(
            msg("[1]"),
            "the body is not a JSON object: POST an AdmissionReview (admission.k8s.io/v1 or v1beta1) as JSON"
        );
        assert_eq!(
            msg("{"),
            "the body is not a valid AdmissionReview: EOF while parsing an object at line 1 column 1"
        );
        assert_eq!(
            msg("{} {}"),
            "the body is not a valid AdmissionReview: trailing characters at line 1 column 4"
        );
        assert_eq!(
            msg(r#"{"kind":"Pod","apiVersion":"v1"}"#),
            "kind is \"Pod\": expected \"AdmissionReview\""
        );
        assert_eq!(
            msg(r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v2"}"#),
            "apiVersion \"admission.k8s.io/v2\" is not supported: use \"admission.k8s.io/v1\" or \"admission.k8s.io/v1beta1\""
        );
        assert_eq!(
            msg(r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#),
            "the AdmissionReview has no request: the API server sends one in every call"
        );
        let review = |request: &str| {
            msg(&format!(
                r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{request}}}"#
            ))
        };
        assert_eq!(
            review(r#"{"kind":{"kind":"X"},"operation":"CREATE"}"#),
            "the body is not a valid AdmissionReview: missing field `uid` at line 1 column 113"
        );
        assert_eq!(
            review(r#"{"uid":"a","uid":"b","kind":{"kind":"X"},"operation":"CREATE"}"#),
            "the body is not a valid AdmissionReview: duplicate field `uid` at line 1 column 87"
        );
        assert_eq!(
            review(r#"{"uid":3,"kind":{"kind":"X"},"operation":"CREATE"}"#),
            "the body is not a valid AdmissionReview: invalid type: integer `3`, expected a string at line 1 column 79"
        );
        assert_eq!(
            review(r#"{"uid":"a","kind":{"kind":"X"},"operation":"PATCH"}"#),
            "the body is not a valid AdmissionReview: unknown variant `PATCH`, expected one of `CREATE`, `UPDATE`, `DELETE`, `CONNECT` at line 1 column 121"
        );
        assert_eq!(
            review(r#"{"uid":"a","kind":{"kind":"X"},"operation":"CREATE","object":{"spec":{"hooks":1}}"#),
            "the body is not a valid AdmissionReview: EOF while parsing an object at line 1 column 153"
        );
        assert_eq!(
            review("7"),
            "the body is not a valid AdmissionReview: invalid type: integer `7`, expected struct Request at line 1 column 72"
        );
        // Latin-1 in a field nobody reads: JSON is UTF-8, so the body is refused all the same.
        let latin1 = b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{\"userInfo\":{\"username\":\"jos\xe9\"}}}";
        assert_eq!(
            decode(latin1).map(|_| ()).unwrap_err().to_string(),
            "the body is not a valid AdmissionReview: invalid UTF-8 at byte 99"
        );
    }
}
