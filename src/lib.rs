//! stash-webhook: a validating admission webhook for Stash that rejects, at `kubectl apply`, hooks
//! whose `executor` names a Function that does not exist or cannot run.
//!
//! The data path: [`server`] (TLS, routes, limits) -> [`review`] (AdmissionReview in and out) ->
//! [`admission`] (which requests are judged) -> [`hooks`] (executor references with field paths)
//! -> [`rules`] (pure verdict), with [`functions`] answering lookups.

pub mod admission;
pub mod alloc;
pub mod certs;
pub mod config;
pub mod functions;
pub mod hooks;
pub mod image;
pub mod metrics;
pub mod review;
pub mod rules;
pub mod scan;
pub mod server;
pub mod tls;

/// The example Functions served by `serve --dev` (the same file as `manifests/examples/functions.yaml`).
pub const EXAMPLE_FUNCTIONS: &str = include_str!("../manifests/examples/functions.yaml");
