//! The HTTP stage of outboxd: from a leased delivery to a recorded outcome.
//!
//! `client` builds the pooled hyper client (HTTP/1.1 keep-alive, HTTP/2 by
//! ALPN, rustls) behind the SSRF `guard`, `request` builds and signs the request a receiver sees,
//! `send` performs it under a whole-request timeout and reads a bounded
//! response, `worker` runs the claim-send loop under the concurrency limits
//! (`in_flight` its bookkeeping, `attempt` the stages of one request,
//! `breakers` the circuit breakers' side effects), `rate` gates requests
//! to rate-limited webhooks,
//! and `writer` writes results back in batches. `single` is one attempt
//! outside the loop, for the admin CLI's test events.

mod attempt;
mod breakers;
pub mod client;
pub mod guard;
mod in_flight;
pub mod rate;
pub mod request;
pub mod send;
pub mod single;
pub mod worker;
pub mod writer;

pub use client::{build_client, ClientError, Clients, HttpClient};
pub use guard::Policy as TargetPolicy;
pub use worker::{Deliverer, Settings};
