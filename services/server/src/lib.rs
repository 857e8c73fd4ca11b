//! The naast service: the `naast` binary and its gRPC transport over the application layer
//! (`naast_app`: command execution, access decisions, the audit log), its configuration, and
//! benchmarks.
//!
//! # Layout
//! - [`auth`]: the gRPC authentication layer (tokens and issuers are `naast_app::auth`'s);
//! - [`audit`], [`households`]: re-exported from `naast_app`;
//! - [`backup`]: `naast backup` and `naast restore`, and the copy a running server makes;
//! - [`load`]: `naast load`, a platform-like mixed workload against a running server;
//! - [`recovery`]: restarting in place once a store failed on a full disk has room again;
//! - [`config`]: settings of `naast serve` from defaults, file, environment and flags;
//! - [`grpc`]: the tonic services, error → status mapping, the shutdown path;
//! - [`demo`]: the five pilot scenarios enacted through the public API;
//! - [`bench_report`]: the effect report's figures, part of `naast bench signals`;
//! - [`bench_fhir`]: `naast bench fhir`, the FHIR facade's figures next to gRPC's;
//! - [`bench`]: `naast bench …`, throughput and latency figures printed as JSON lines next to
//!   a ceiling measured in the same run.

pub use naast_app::{audit, households};
pub mod adopt;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod bench_fhir;
pub mod bench_nodes;
pub mod bench_push;
pub mod bench_report;
pub mod bench_signals;
pub mod config;
pub mod demo;
pub mod grpc;
pub mod load;
pub mod metrics;
pub mod recovery;
pub mod web;
