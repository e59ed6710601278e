//! stash-webhook: a validating admission webhook for Stash that rejects, at `kubectl apply`, hooks
//! whose `executor` names a Function, and objects whose `task` names a Task, that does not exist or
//! cannot run; and the same for KubeStash ([`kubestash`]): addons, their tasks' Functions, and
//! HookTemplates.
//!
//! The data path: [`http`] (TLS, routes, limits) -> [`review`] (AdmissionReview in and out) ->
//! [`validator`] (which requests are judged, their lookups) -> [`stash`] (kinds, hook locations,
//! executor and Task references with field paths) -> [`rules`] (pure verdicts), with
//! [`sources`] answering lookups of the referents ([`functions`], [`tasks`]).

#![forbid(unsafe_code)]

pub mod certs;
pub mod check;
pub mod config;
pub mod documents;
pub mod functions;
pub mod http;
pub mod image;
pub mod kubestash;
pub mod metrics;
pub mod references;
pub mod review;
pub mod rules;
pub mod sources;
pub mod stash;
pub mod tasks;
pub mod tls;
pub mod validator;

/// The example Functions served by `serve --dev` (the same file as `manifests/examples/functions.yaml`).
pub const EXAMPLE_FUNCTIONS: &str = include_str!("../manifests/examples/functions.yaml");
