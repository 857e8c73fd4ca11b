//! Push of a family's shared plan to the PGO platforms it granted access, so the plan shows up
//! in the platform the family already uses without anyone polling or copying.
//!
//! - [`endpoint`]: the configured endpoints (a FHIR server of a platform), how naast
//!   authenticates to them, and which platform's consent grants decide what each is sent;
//! - [`render`]: what a platform should hold of a household (the FHIR facade's resources,
//!   decided by the family's grants to that platform alone) and each resource as written there;
//! - [`deliver`]: requests retried until answered for good (backoff with jitter, `Retry-After`);
//! - [`store`]: per endpoint a checkpoint in the event log, a ledger of what was written, and
//!   the dead letters;
//! - [`worker`]: one worker per endpoint following the event log, writing what changed and
//!   withdrawing what is no longer granted, every request recorded in the audit log.

pub mod deliver;
pub mod endpoint;
pub mod render;
pub mod store;
pub mod worker;

pub use endpoint::{Endpoint, EndpointError};
pub use store::Store;

/// What `naast serve` pushes: the endpoints, and the store of what each was sent.
pub struct Setup {
    /// The endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Their checkpoints, ledgers and dead letters.
    pub store: Store,
}

/// Starts a worker for each endpoint; they stop when `stop` turns true.
pub fn spawn(
    endpoints: &[Endpoint],
    households: &naast_app::households::Households,
    store: &Store,
    auditor: Option<&naast_app::audit::Auditor>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    endpoints
        .iter()
        .map(|endpoint| {
            tracing::info!(endpoint = %endpoint.name, kind = endpoint.kind.name(), url = %endpoint.url, "pushing to");
            tokio::spawn(worker::run(
                endpoint.clone(),
                households.clone(),
                store.clone(),
                auditor.cloned(),
                stop.clone(),
            ))
        })
        .collect()
}
