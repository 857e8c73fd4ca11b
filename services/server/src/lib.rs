//! The naast service: for now its benchmarks; the gRPC server and the demo follow.
//!
//! # Layout
//! - [`bench`]: `naast bench …`, throughput and latency figures printed as JSON lines next to
//!   a ceiling measured in the same run.

pub mod bench;
