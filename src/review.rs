//! The AdmissionReview wire format: decoding what the API server POSTs, encoding the answer in
//! the same `admission.k8s.io` version it was asked in.

use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::{DynamicObject, TypeMeta};
use serde::Deserialize;
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
    request: Option<AdmissionRequest<DynamicObject>>,
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
    let mut request = envelope.request.ok_or(ReviewError::NoRequest)?;
    request.types = TypeMeta {
        api_version: version.api_version().to_owned(),
        kind,
    };
    Ok((version, request))
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
