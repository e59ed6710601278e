//! The AdmissionReview wire format: decoding what the API server POSTs, encoding the answer in
//! the same `admission.k8s.io` version it was asked in.

use std::fmt;

use std::borrow::Cow;

use crate::hooks::{json_type, SpecHooks};
use crate::scan::{DeError, Scanner, SyntaxError};

use kube::core::admission::{AdmissionResponse, Operation};
use kube::core::Status;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
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
    #[error("the body is not a valid AdmissionReview: {0}")]
    Syntax(#[from] SyntaxError),
    #[error("the body is not a valid AdmissionReview: {field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("the body is not a valid AdmissionReview: {0} is missing")]
    Missing(&'static str),
    #[error("the body is not a valid AdmissionReview: {0} is given twice")]
    Duplicate(&'static str),
    #[error("kind is {0:?}: expected \"AdmissionReview\"")]
    Kind(String),
    #[error("apiVersion {0:?} is not supported: use \"admission.k8s.io/v1\" or \"admission.k8s.io/v1beta1\"")]
    Version(String),
    #[error("the AdmissionReview has no request: the API server sends one in every call")]
    NoRequest,
}

/// A string from the body: borrowed when the JSON has no escapes in it (the usual case), owned
/// when it has. Decoding a review then allocates for the hooks it keeps, not for its identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// The group, version and kind of the object under review.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Gvk<'a> {
    #[serde(default, borrow)]
    pub group: Text<'a>,
    #[serde(default, borrow)]
    pub version: Text<'a>,
    #[serde(borrow)]
    pub kind: Text<'a>,
}

/// The request fields this server uses, borrowed from the body. Everything else (userInfo,
/// options, resource, most of each object) is skipped while scanning rather than built and thrown
/// away: a review carries the object twice (`object`, `oldObject`) and each copy again in its
/// last-applied annotation and managedFields.
#[derive(Debug)]
pub struct Request<'a> {
    pub uid: Text<'a>,
    pub kind: Gvk<'a>,
    pub name: Text<'a>,
    pub namespace: Option<Text<'a>>,
    pub operation: Operation,
    pub object: Option<Object>,
    pub old_object: Option<Object>,
    pub dry_run: bool,
}

/// An object as the rules read it: of its spec only `hooks` and the `hooks` of each of `members`,
/// and of each hook only `executor`.
#[derive(Debug, Default)]
pub struct Object {
    /// The executors of `spec.hooks` and `spec.members[].hooks`; empty when the object has no
    /// spec or a spec that is not a map.
    pub spec: SpecHooks,
}

#[derive(Deserialize)]
struct TypesOnly<'a> {
    #[serde(default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, rename = "apiVersion", borrow)]
    api_version: Option<Text<'a>>,
}

fn check_types(
    kind: Option<Text<'_>>,
    api_version: Option<Text<'_>>,
) -> Result<ReviewVersion, ReviewError> {
    let kind = kind.unwrap_or_default();
    if kind != "AdmissionReview" {
        return Err(ReviewError::Kind(kind.0.into_owned()));
    }
    match api_version.as_deref() {
        Some(V1) => Ok(ReviewVersion::V1),
        Some(V1BETA1) => Ok(ReviewVersion::V1Beta1),
        other => Err(ReviewError::Version(other.unwrap_or_default().to_owned())),
    }
}

/// Decodes an AdmissionReview body into its version and request, borrowing from `body`.
pub fn decode(body: &[u8]) -> Result<(ReviewVersion, Request<'_>), ReviewError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ReviewError::Empty);
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ReviewError::NotAnObject);
    }
    match read_review(body) {
        Ok((kind, api_version, request)) => {
            let version = check_types(kind, api_version)?;
            Ok((version, request.ok_or(ReviewError::NoRequest)?))
        }
        Err(err) => {
            // A wrong kind or version explains a request of the wrong shape better than the
            // shape error does, so look at those alone before reporting the parse error.
            if let Ok(types) = serde_json::from_slice::<TypesOnly>(body) {
                check_types(types.kind, types.api_version)?;
            }
            Err(err)
        }
    }
}

type Envelope<'a> = (Option<Text<'a>>, Option<Text<'a>>, Option<Request<'a>>);

/// One value, read from the scanner's position; errors about its type name the field.
fn field<'a, T: Deserialize<'a>>(
    scanner: &mut Scanner<'a>,
    name: &'static str,
) -> Result<T, ReviewError> {
    field_with(scanner, name, Scanner::deserialize)
}

/// [`field`], read by `read`.
fn field_with<'a, T>(
    scanner: &mut Scanner<'a>,
    name: &'static str,
    read: impl FnOnce(&mut Scanner<'a>) -> Result<T, DeError>,
) -> Result<T, ReviewError> {
    read(scanner).map_err(|err| match err {
        DeError::Syntax(err) => ReviewError::Syntax(err),
        DeError::Invalid(message) => ReviewError::Field {
            field: name,
            message,
        },
    })
}

/// Sets a field once; a second value for it is refused, as serde refuses duplicate fields.
fn once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), ReviewError> {
    if slot.replace(value).is_some() {
        return Err(ReviewError::Duplicate(name));
    }
    Ok(())
}

/// Reads field `name` into `slot`, once.
fn set<'a, T: Deserialize<'a>>(
    slot: &mut Option<T>,
    scanner: &mut Scanner<'a>,
    name: &'static str,
) -> Result<(), ReviewError> {
    let value = field(scanner, name)?;
    once(slot, value, name)
}

fn read_review(body: &[u8]) -> Result<Envelope<'_>, ReviewError> {
    let mut scanner = Scanner::new(body);
    scanner.utf8()?;
    let (mut kind, mut api_version, mut request) = (None, None, None);
    scanner.object(|s, key| match &*key.bytes() {
        b"kind" => set::<Option<Text>>(&mut kind, s, "kind"),
        b"apiVersion" => set::<Option<Text>>(&mut api_version, s, "apiVersion"),
        b"request" => {
            let value = if s.null()? {
                None
            } else {
                Some(read_request(s)?)
            };
            once(&mut request, value, "request")
        }
        _ => Ok(s.skip()?),
    })?;
    scanner.end()?;
    Ok((kind.flatten(), api_version.flatten(), request.flatten()))
}

fn read_request<'a>(s: &mut Scanner<'a>) -> Result<Request<'a>, ReviewError> {
    if s.next_byte() != Some(b'{') {
        let found = field::<Value>(s, "request")?;
        return Err(ReviewError::Field {
            field: "request",
            message: format!("expected a map, got {}", json_type(&found)),
        });
    }
    let mut uid = None;
    let mut kind = None;
    let mut name = None;
    let mut namespace = None;
    let mut operation = None;
    let mut object = None;
    let mut old_object = None;
    let mut dry_run = None;
    s.object(|s, key| match &*key.bytes() {
        b"uid" => set(&mut uid, s, "request.uid"),
        b"kind" => set(&mut kind, s, "request.kind"),
        b"name" => set(&mut name, s, "request.name"),
        b"namespace" => set(&mut namespace, s, "request.namespace"),
        b"operation" => set(&mut operation, s, "request.operation"),
        b"object" => once(
            &mut object,
            read_object(s, "request.object")?,
            "request.object",
        ),
        b"oldObject" => once(
            &mut old_object,
            read_object(s, "request.oldObject")?,
            "request.oldObject",
        ),
        b"dryRun" => set(&mut dry_run, s, "request.dryRun"),
        _ => Ok(s.skip()?),
    })?;
    Ok(Request {
        uid: uid.ok_or(ReviewError::Missing("request.uid"))?,
        kind: kind.ok_or(ReviewError::Missing("request.kind"))?,
        name: name.unwrap_or_default(),
        namespace,
        operation: operation.ok_or(ReviewError::Missing("request.operation"))?,
        object: object.flatten(),
        old_object: old_object.flatten(),
        dry_run: dry_run.unwrap_or(false),
    })
}

/// An object, or null; of the object only `spec` is read.
fn read_object(s: &mut Scanner<'_>, name: &'static str) -> Result<Option<Object>, ReviewError> {
    if s.null()? {
        return Ok(None);
    }
    if s.next_byte() != Some(b'{') {
        let found = field::<Value>(s, name)?;
        return Err(ReviewError::Field {
            field: name,
            message: format!("expected a map or null, got {}", json_type(&found)),
        });
    }
    let spec_name = if name == "request.object" {
        "request.object.spec"
    } else {
        "request.oldObject.spec"
    };
    let mut spec = None;
    s.object(|s, key| match &*key.bytes() {
        b"spec" => once(
            &mut spec,
            field_with(s, spec_name, SpecHooks::read)?,
            spec_name,
        ),
        _ => Ok(s.skip()?),
    })?;
    Ok(Some(Object {
        spec: spec.unwrap_or_default(),
    }))
}

/// What this server answers a review: allowed, or denied with a message, and any warnings. Kept
/// this small on purpose: most answers are a plain allow, written without building kube's
/// `AdmissionResponse` (some 400 bytes, moved with the review's future, and three allocations).
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
    pub fn to_response(&self, uid: &str) -> AdmissionResponse {
        // `AdmissionResponse::from` needs kube's request type; `invalid` is the one public
        // constructor that takes none, and every field it sets is overwritten here.
        let mut response = AdmissionResponse::invalid("");
        response.uid = uid.to_owned();
        response.allowed = self.allowed;
        response.result = if self.allowed {
            Status::default()
        } else {
            Status::failure(&self.message, "Forbidden").with_code(403)
        };
        if !self.warnings.is_empty() {
            response.warnings = Some(self.warnings.clone());
        }
        response
    }
}

/// What is sent back: the AdmissionReview envelope around the response. Serialized directly
/// rather than through kube's `AdmissionReview`, whose flattened `types` go through a map.
#[derive(Serialize)]
struct Answer<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: &'a AdmissionResponse,
}

/// Encodes `reply` to the request `uid` as an AdmissionReview of `version`.
pub fn encode(
    version: ReviewVersion,
    uid: &str,
    reply: &Reply,
) -> Result<Vec<u8>, serde_json::Error> {
    if let Some(out) = encode_plain_allow(version, uid, reply) {
        return Ok(out);
    }
    encode_response(version, &reply.to_response(uid))
}

/// Encodes kube's `response` as an AdmissionReview of `version`.
fn encode_response(
    version: ReviewVersion,
    response: &AdmissionResponse,
) -> Result<Vec<u8>, serde_json::Error> {
    // Sized up front so the buffer is not reallocated while writing (see `hooks::executor_refs`).
    let text = response.result.message.len()
        + response
            .warnings
            .iter()
            .flatten()
            .map(String::len)
            .sum::<usize>();
    let mut out = Vec::with_capacity(256 + text + text / 8);
    serde_json::to_writer(
        &mut out,
        &Answer {
            api_version: version.api_version(),
            kind: "AdmissionReview",
            response,
        },
    )?;
    Ok(out)
}

/// The answer most reviews get (allowed, with nothing else to say), written directly: the bytes
/// serde writes for it, at a fraction of the cost. `None` for any other answer, and for a uid
/// that is not plain letters, digits and dashes (the API server's are UUIDs), which serde
/// escapes.
fn encode_plain_allow(version: ReviewVersion, uid: &str, reply: &Reply) -> Option<Vec<u8>> {
    let plain = reply.allowed
        && reply.warnings.is_empty()
        && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !plain {
        return None;
    }
    let parts: [&[u8]; 5] = [
        br#"{"apiVersion":""#,
        version.api_version().as_bytes(),
        br#"","kind":"AdmissionReview","response":{"uid":""#,
        uid.as_bytes(),
        br#"","allowed":true,"status":{}}}"#,
    ];
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
    Some(out)
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
    fn the_plain_allow_is_written_as_serde_writes_it() {
        let (_, req) = decode(CREATE.as_bytes()).unwrap();
        let through_serde = |version, uid: &str, reply: &Reply| {
            serde_json::to_vec(&Answer {
                api_version: ReviewVersion::api_version(version),
                kind: "AdmissionReview",
                response: &reply.to_response(uid),
            })
            .unwrap()
        };
        for version in [ReviewVersion::V1, ReviewVersion::V1Beta1] {
            let allow = Reply::allow();
            let plain = encode_plain_allow(version, &req.uid, &allow).expect("a plain allow");
            assert_eq!(plain, through_serde(version, &req.uid, &allow));
            assert_eq!(encode(version, &req.uid, &allow).unwrap(), plain);
            // Anything more, and serde writes it.
            for uid in ["a\"b", "é", "a\\b", ""] {
                let general = encode(version, uid, &allow).unwrap();
                assert_eq!(general, through_serde(version, uid, &allow), "{uid}");
                if !uid.is_empty() {
                    assert_eq!(encode_plain_allow(version, uid, &allow), None, "{uid}");
                }
            }
            let warned = Reply {
                warnings: vec!["w".into()],
                ..Reply::allow()
            };
            let denied = Reply::deny("no".into());
            for other in [warned, denied] {
                assert_eq!(encode_plain_allow(version, &req.uid, &other), None);
                assert_eq!(
                    encode(version, &req.uid, &other).unwrap(),
                    through_serde(version, &req.uid, &other)
                );
            }
        }
    }

    #[test]
    fn a_denial_is_a_403_forbidden_failure_with_its_warnings() {
        let reply = Reply {
            warnings: vec!["w1".into(), "w2".into()],
            ..Reply::deny("spec.hooks.preBackup.executor.functionName: no".into())
        };
        let out: serde_json::Value =
            serde_json::from_slice(&encode(ReviewVersion::V1, "u-1", &reply).unwrap()).unwrap();
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
            &encode(ReviewVersion::V1, "u-1", &Reply::deny("no".into())).unwrap(),
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
            serde_json::from_slice(&encode(version, &req.uid, &Reply::allow()).unwrap()).unwrap();
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
        use crate::hooks::{Executor, FunctionName, HookSet, Params};
        let body = serde_json::json!({"apiVersion": V1, "kind": "AdmissionReview", "request": {
            "uid": "u", "kind": {"group": "stash.appscode.com", "version": "v1beta1", "kind": "BackupBatch"},
            "resource": {"group": "stash.appscode.com", "version": "v1beta1", "resource": "backupbatches"},
            "operation": "CREATE", "userInfo": {"username": "u"},
            "object": {"apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupBatch",
                "metadata": {"name": "b", "namespace": "demo", "annotations": {"a": "b"}, "managedFields": [{}]},
                "spec": {"schedule": "* * * * *", "hooks": {"preBackup": {"exec": ["/bin/true"]},
                                                            "postBackup": {"exec": {"command": ["/bin/sh"]}, "executor": {"functionName": "f", "params": {"a": "b"}}},
                                                            "preRestore": "not a map"},
                         "members": [{"target": {}, "hooks": {"postBackup": {}}}, "not a map", {"target": {}}]}},
            "oldObject": {"metadata": {"name": "b"}, "spec": "not a map"}
        }});
        let text = body.to_string();
        let (_, req) = decode(text.as_bytes()).unwrap();
        let object = req.object.unwrap();
        assert_eq!(
            object.spec,
            SpecHooks {
                hooks: HookSet(vec![(
                    "postBackup",
                    Executor::Ref {
                        function: FunctionName::Named("f".to_owned()),
                        params: Params::Keys(vec!["a".to_owned()])
                    }
                )]),
                members: vec![HookSet::default(); 3],
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
        assert!(matches!(req.uid.0, Cow::Owned(_)));
        assert!(matches!(
            req.kind.kind.0,
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
        let review = |request: &str| {
            msg(&format!(
                r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{request}}}"#
            ))
        };
        assert_eq!(
            review(r#"{"kind":{"kind":"X"},"operation":"CREATE"}"#),
            "the body is not a valid AdmissionReview: request.uid is missing"
        );
        assert_eq!(
            review(r#"{"uid":"a","uid":"b","kind":{"kind":"X"},"operation":"CREATE"}"#),
            "the body is not a valid AdmissionReview: request.uid is given twice"
        );
        assert_eq!(
            review(r#"{"uid":3,"kind":{"kind":"X"},"operation":"CREATE"}"#),
            "the body is not a valid AdmissionReview: request.uid: invalid type: integer `3`, expected a string"
        );
        assert_eq!(
            review(r#"{"uid":"a","kind":{"kind":"X"},"operation":"PATCH"}"#),
            "the body is not a valid AdmissionReview: request.operation: unknown variant `PATCH`, expected one of `CREATE`, `UPDATE`, `DELETE`, `CONNECT`"
        );
        assert_eq!(
            review(r#"{"uid":"a","kind":{"kind":"X"},"operation":"CREATE","object":[]}"#),
            "the body is not a valid AdmissionReview: request.object: expected a map or null, got a list"
        );
        assert_eq!(
            review(
                r#"{"uid":"a","kind":{"kind":"X"},"operation":"CREATE","object":{"spec":{"hooks":1}}"#
            ),
            "the body is not a valid AdmissionReview: EOF while parsing an object at byte 153"
        );
        // Latin-1 in a field nobody reads: JSON is UTF-8, so the body is refused all the same.
        let latin1 = b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{\"userInfo\":{\"username\":\"jos\xe9\"}}}";
        assert_eq!(
            decode(latin1).map(|_| ()).unwrap_err().to_string(),
            "the body is not a valid AdmissionReview: invalid UTF-8 at byte 99"
        );
        assert_eq!(
            review("7"),
            "the body is not a valid AdmissionReview: request: expected a map, got a number"
        );
    }
}
