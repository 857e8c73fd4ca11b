//! The naast service: the gRPC server over the event log, its configuration, and benchmarks.
//!
//! # Layout
//! - [`auth`]: bearer tokens from trusted OpenID issuers (and the dev issuer) → principals;
//! - [`audit`]: the NEN 7513 audit log of every call;
//! - [`config`]: settings of `naast serve` from defaults, file, environment and flags;
//! - [`households`]: executing commands on households (load, decide, append) and reading them;
//! - [`grpc`]: the tonic services, error → status mapping, the shutdown path;
//! - [`demo`]: the five pilot scenarios enacted through the public API;
//! - [`bench`]: `naast bench …`, throughput and latency figures printed as JSON lines next to
//!   a ceiling measured in the same run.

pub mod audit;
pub mod auth;
pub mod bench;
pub mod config;
pub mod demo;
pub mod grpc;
pub mod households;
