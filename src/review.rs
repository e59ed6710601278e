//! The AdmissionReview wire format: decoding what the API server POSTs, encoding the answer in
//! the same `admission.k8s.io` version it was asked in.

use std::fmt;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use thiserror::Error;

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
    #[error("the body is not a valid AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    #[error("kind is {0:?}: expected \"AdmissionReview\"")]
    Kind(String),
    #[error("apiVersion {0:?} is not supported: use \"admission.k8s.io/v1\" or \"admission.k8s.io/v1beta1\"")]
    Version(String),
    #[error("the AdmissionReview has no request: the API server sends one in every call")]
    NoRequest,
}

/// The review envelope, read without `#[serde(flatten)]` so the body is parsed in one pass.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default, rename = "apiVersion")]
    api_version: Option<String>,
    #[serde(default)]
    request: Option<SlimRequest>,
}

/// The request fields this server uses. Everything else (userInfo, options, most of each object)
/// is skipped while parsing rather than built and thrown away: a review carries the object twice
/// (`object`, `oldObject`) and each copy again in its last-applied annotation and managedFields.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimRequest {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    object: Option<SlimObject>,
    #[serde(default)]
    old_object: Option<SlimObject>,
    #[serde(default)]
    dry_run: bool,
}

impl SlimRequest {
    fn into_request(self, types: TypeMeta) -> AdmissionRequest<DynamicObject> {
        AdmissionRequest {
            types,
            uid: self.uid,
            kind: self.kind,
            resource: self.resource,
            sub_resource: self.sub_resource,
            request_kind: self.request_kind,
            request_resource: self.request_resource,
            request_sub_resource: self.request_sub_resource,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            user_info: UserInfo::default(),
            object: self.object.map(SlimObject::into_dynamic),
            old_object: self.old_object.map(SlimObject::into_dynamic),
            dry_run: self.dry_run,
            options: None,
        }
    }
}

/// An object as the rules read it: its name and namespace, and of its spec only `hooks` and the
/// `hooks` of each of `members`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimObject {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: SlimMeta,
    #[serde(default)]
    spec: Option<Hooks>,
}

#[derive(Default, Deserialize)]
struct SlimMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

impl SlimObject {
    fn into_dynamic(self) -> DynamicObject {
        let types = match (self.api_version, self.kind) {
            (Some(api_version), Some(kind)) => Some(TypeMeta { api_version, kind }),
            _ => None,
        };
        let mut data = Map::new();
        if let Some(Hooks(spec)) = self.spec {
            data.insert("spec".to_owned(), spec);
        }
        DynamicObject {
            types,
            metadata: ObjectMeta {
                name: self.metadata.name,
                namespace: self.metadata.namespace,
                ..ObjectMeta::default()
            },
            data: Value::Object(data),
        }
    }
}

/// Keeps `hooks` (and, at the top level, `members[].hooks`) of a map, as JSON; skips every other
/// key. A value of another shape becomes null: the rules read it tolerantly, never reject it.
struct Hooks(Value);

#[derive(Clone, Copy)]
enum Level {
    Spec,
    Member,
}

impl<'de> Deserialize<'de> for Hooks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(HooksVisitor(Level::Spec))
    }
}

struct Member(Value);

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(HooksVisitor(Level::Member))
            .map(|Hooks(v)| Member(v))
    }
}

struct Members(Value);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MembersVisitor)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum SpecKey {
    Hooks,
    Members,
    #[serde(other)]
    Other,
}

/// Accepts any scalar as "not the expected shape": `ignore` gives what to return then.
macro_rules! ignore_scalars {
    ($ret:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($ret)
        }
    };
}

struct HooksVisitor(Level);

impl<'de> Visitor<'de> for HooksVisitor {
    type Value = Hooks;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    ignore_scalars!(Hooks(Value::Null));

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Hooks, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Hooks(Value::Null))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Hooks, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key::<SpecKey>()? {
            match (key, self.0) {
                (SpecKey::Hooks, _) => {
                    kept.insert("hooks".to_owned(), map.next_value::<Value>()?);
                }
                (SpecKey::Members, Level::Spec) => {
                    let Members(members) = map.next_value()?;
                    kept.insert("members".to_owned(), members);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Hooks(Value::Object(kept)))
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    ignore_scalars!(Members(Value::Null));

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Members, A::Error> {
        // Every element keeps its place, so field paths (`members[i]`) stay right.
        let mut members = Vec::new();
        while let Some(Member(m)) = seq.next_element()? {
            members.push(m);
        }
        Ok(Members(Value::Array(members)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Members(Value::Null))
    }
}

#[derive(Deserialize)]
struct TypesOnly {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default, rename = "apiVersion")]
    api_version: Option<String>,
}

fn check_types(
    kind: Option<String>,
    api_version: Option<String>,
) -> Result<(String, ReviewVersion), ReviewError> {
    let kind = kind.unwrap_or_default();
    if kind != "AdmissionReview" {
        return Err(ReviewError::Kind(kind));
    }
    let version = match api_version.as_deref() {
        Some(V1) => ReviewVersion::V1,
        Some(V1BETA1) => ReviewVersion::V1Beta1,
        other => return Err(ReviewError::Version(other.unwrap_or_default().to_owned())),
    };
    Ok((kind, version))
}

/// Decodes an AdmissionReview body into its version and request.
pub fn decode(
    body: &[u8],
) -> Result<(ReviewVersion, AdmissionRequest<DynamicObject>), ReviewError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ReviewError::Empty);
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ReviewError::NotAnObject);
    }
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(err) => {
            // A wrong kind or version explains a request of the wrong shape better than the
            // shape error does, so look at those alone before reporting the parse error.
            if let Ok(types) = serde_json::from_slice::<TypesOnly>(body) {
                check_types(types.kind, types.api_version)?;
            }
            return Err(err.into());
        }
    };
    let (kind, version) = check_types(envelope.kind, envelope.api_version)?;
    let request = envelope.request.ok_or(ReviewError::NoRequest)?;
    let types = TypeMeta {
        api_version: version.api_version().to_owned(),
        kind,
    };
    Ok((version, request.into_request(types)))
}

/// Encodes `response` as an AdmissionReview of `version`.
pub fn encode(
    version: ReviewVersion,
    response: AdmissionResponse,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut review: AdmissionReview<DynamicObject> = response.into_review();
    review.types = TypeMeta {
        api_version: version.api_version().to_owned(),
        kind: "AdmissionReview".to_owned(),
    };
    serde_json::to_vec(&review)
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
    }

    #[test]
    fn answers_in_the_version_asked() {
        let body = CREATE.replace(V1, V1BETA1);
        let (version, req) = decode(body.as_bytes()).unwrap();
        assert_eq!(version, ReviewVersion::V1Beta1);
        let out: serde_json::Value =
            serde_json::from_slice(&encode(version, AdmissionResponse::from(&req)).unwrap())
                .unwrap();
        assert_eq!(out["apiVersion"], V1BETA1);
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(
            out["response"]["uid"],
            "2f4654dc-4eb5-4f5c-99a7-7fac85a06744"
        );
        assert_eq!(out["response"]["allowed"], true);
    }

    #[test]
    fn keeps_only_hooks_of_the_spec_and_of_each_member() {
        let body = serde_json::json!({"apiVersion": V1, "kind": "AdmissionReview", "request": {
            "uid": "u", "kind": {"group": "stash.appscode.com", "version": "v1beta1", "kind": "BackupBatch"},
            "resource": {"group": "stash.appscode.com", "version": "v1beta1", "resource": "backupbatches"},
            "operation": "CREATE", "userInfo": {"username": "u"},
            "object": {"apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupBatch",
                "metadata": {"name": "b", "namespace": "demo", "annotations": {"a": "b"}, "managedFields": [{}]},
                "spec": {"schedule": "* * * * *", "hooks": {"preBackup": {"exec": ["/bin/true"]}},
                         "members": [{"target": {}, "hooks": {"postBackup": {}}}, "not a map", {"target": {}}]}},
            "oldObject": {"metadata": {"name": "b"}, "spec": "not a map"}
        }});
        let (_, req) = decode(body.to_string().as_bytes()).unwrap();
        let object = req.object.unwrap();
        assert_eq!(object.metadata.name.as_deref(), Some("b"));
        assert_eq!(object.metadata.namespace.as_deref(), Some("demo"));
        assert_eq!(
            object.data,
            serde_json::json!({"spec": {"hooks": {"preBackup": {"exec": ["/bin/true"]}},
                                        "members": [{"hooks": {"postBackup": {}}}, null, {}]}})
        );
        assert_eq!(
            req.old_object.unwrap().data,
            serde_json::json!({"spec": null})
        );
    }

    #[test]
    fn explains_bad_bodies() {
        let msg = |b: &str| decode(b.as_bytes()).map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            msg(""),
            "the body is empty: POST an AdmissionReview (admission.k8s.io/v1 or v1beta1) as JSON"
        );
        assert!(
            msg("{").starts_with("the body is not a valid AdmissionReview: EOF while parsing"),
            "{}",
            msg("{")
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
    }
}
