//! HTTPS: the routes ([`router`]) and the connections that carry them ([`serve`]).

mod router;
mod serve;

pub use router::{router, App, Limits};
pub use serve::{serve_metrics, serve_tls};
