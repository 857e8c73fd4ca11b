//! The application layer of naast: one path into the domain for every transport (gRPC today,
//! FHIR over HTTP and the web next). A transport turns its requests into a [`auth::caller::Calling`]
//! and domain commands or reads, calls this crate, and turns the answer (or [`households::AppError`])
//! back into its own wire format; the access decisions and the audit record are the same
//! whichever door a call comes in by.
//!
//! # Layout
//! - [`households`]: executing commands on households (load, decide, append with its audit
//!   record) and reads decided on the state they show;
//! - [`auth`]: bearer tokens from trusted OpenID issuers (and the development issuer) →
//!   principals; [`auth::caller`]: who is calling, and their access decisions;
//! - [`evaluation`]: the measurement instruments and the effect report across households;
//! - [`audit`]: the NEN 7513 audit log of every call.

pub mod audit;
pub mod auth;
pub mod evaluation;
pub mod households;
