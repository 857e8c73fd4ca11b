//! Push of a family's shared plan to the PGO platforms it granted access, so the plan shows up
//! in the platform the family already uses without anyone polling or copying.
//!
//! - [`endpoint`]: the configured endpoints (a FHIR server of a platform), how naast
//!   authenticates to them, and which platform's consent grants decide what each is sent;
//! - [`render`]: what a platform should hold of a household (the FHIR facade's resources,
//!   decided by the family's grants to that platform alone) and each resource as written there;
//! - [`oauth`]: `client_credentials` with `private_key_jwt` (SMART Backend Services);
//! - [`deliver`]: requests retried until answered for good (backoff with jitter, `Retry-After`);
//! - [`store`]: per endpoint a checkpoint in the event log, a ledger of what was written, and
//!   the dead letters;
//! - [`feed`]: the change feed of one platform, from a cursor it keeps;
//! - [`webhook`]: signed notices (Standard Webhooks), one per change of the feed;
//! - [`subscriptions`]: FHIR Subscriptions' notifications, numbered without gaps;
//! - [`worker`]: one worker per endpoint following the event log, writing what changed and
//!   withdrawing what is no longer granted, every request recorded in the audit log.

pub mod deliver;
pub mod endpoint;
pub mod feed;
pub mod oauth;
pub mod render;
pub mod scope;
pub mod store;
pub mod subscriptions;
mod trees;
pub mod webhook;
pub mod worker;

pub use endpoint::{Endpoint, EndpointError};
pub use store::Store;

use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What `naast serve` pushes: the endpoints, and the store of what each was sent.
pub struct Setup {
    /// The endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Their checkpoints, ledgers and dead letters; the FHIR Subscriptions.
    pub store: Store,
    /// Whether this node pushes and sends the subscriptions' notifications. Of several nodes on
    /// one database only the one holding the push lease does; the others keep the
    /// subscriptions made through their FHIR door in the shared store, for it to serve.
    pub delivers: bool,
}

/// The state of one endpoint, for the administrators.
#[derive(Clone, Debug)]
pub struct EndpointState {
    /// Its configuration.
    pub endpoint: Endpoint,
    /// The position up to which every household is synchronised.
    pub checkpoint: u64,
    /// Households and resources the platform holds.
    pub households: u64,
    /// Resources the platform holds.
    pub resources: u64,
    /// Dead letters waiting.
    pub dead_letters: u64,
    /// How deliveries went since naast started.
    pub status: deliver::Status,
}

struct Handle {
    endpoint: Endpoint,
    status: Arc<Mutex<deliver::Status>>,
    replays: mpsc::UnboundedSender<Vec<store::DeadLetter>>,
}

/// The running push: a worker per endpoint, and what administrators may ask of them.
#[derive(Clone)]
pub struct Pusher {
    store: Store,
    handles: Arc<Vec<Handle>>,
}

impl Pusher {
    /// Starts a worker for each endpoint of `setup`; they stop when `stop` turns true.
    pub fn start(
        setup: Setup,
        households: &naast_app::households::Households,
        auditor: Option<&naast_app::audit::Auditor>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let mut handles = Vec::new();
        let mut tasks = Vec::new();
        for endpoint in setup.endpoints {
            tracing::info!(endpoint = %endpoint.name, kind = endpoint.kind.name(), url = %endpoint.url, "pushing to");
            let status = Arc::new(Mutex::new(deliver::Status::default()));
            let (replays, receiver) = mpsc::unbounded_channel();
            tasks.push(tokio::spawn(worker::run(
                endpoint.clone(),
                worker::Wiring {
                    households: households.clone(),
                    store: setup.store.clone(),
                    auditor: auditor.cloned(),
                    status: status.clone(),
                    replays: receiver,
                    stop: stop.clone(),
                },
            )));
            handles.push(Handle {
                endpoint,
                status,
                replays,
            });
        }
        (
            Self {
                store: setup.store,
                handles: Arc::new(handles),
            },
            tasks,
        )
    }

    /// Every endpoint and its state, in configuration order.
    pub fn endpoints(&self) -> Result<Vec<EndpointState>, store::StoreError> {
        self.handles
            .iter()
            .map(|h| {
                let (households, resources, dead_letters) = self.store.counts(&h.endpoint.name)?;
                Ok(EndpointState {
                    endpoint: h.endpoint.clone(),
                    checkpoint: self.store.checkpoint(&h.endpoint.name)?,
                    households,
                    resources,
                    dead_letters,
                    status: h.status.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                })
            })
            .collect()
    }

    fn handle(&self, endpoint: &str) -> Option<&Handle> {
        self.handles.iter().find(|h| h.endpoint.name == endpoint)
    }

    /// At most `limit` dead letters of `endpoint` after number `after`; `None`: no such
    /// endpoint.
    pub fn dead_letters(
        &self,
        endpoint: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Option<Vec<store::DeadLetter>>, store::StoreError> {
        if self.handle(endpoint).is_none() {
            return Ok(None);
        }
        self.store
            .dead_letters_after(endpoint, after, limit)
            .map(Some)
    }

    /// Takes dead letters of `endpoint` up again (`id`, or all): how many; `None`: no such
    /// endpoint. Their households are synchronised at once.
    pub fn replay(
        &self,
        endpoint: &str,
        id: Option<u64>,
    ) -> Result<Option<u64>, store::StoreError> {
        let Some(handle) = self.handle(endpoint) else {
            return Ok(None);
        };
        let letters = match id {
            Some(id) => self.store.dead_letter(endpoint, id)?.into_iter().collect(),
            None => self.store.dead_letters(endpoint)?,
        };
        let mut revived = Vec::new();
        for letter in letters {
            // A webhook's notice stays a dead letter until its worker sent it again; a FHIR
            // resource's ledger entry is marked unwritten at once.
            if letter.notice.is_some() || self.store.revive(endpoint, &letter)? {
                revived.push(letter);
            }
        }
        let replayed = revived.len() as u64;
        if !revived.is_empty() {
            // A FHIR worker that has stopped takes them up at its next start (the ledger says
            // so); a webhook's notice is kept until its worker took it.
            let _ = handle.replays.send(revived);
        }
        Ok(Some(replayed))
    }
}
