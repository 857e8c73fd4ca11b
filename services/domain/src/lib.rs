//! The care domain of naast: households with their members and network, plans, goals,
//! agreements, indications and transitions between funding domains, the supporter's logbook.
//! Pure logic: no storage, no network, no generated code.
//!
//! # Layout
//! - [`access`]: who may do what: owners, consent grants, parties, platforms;
//! - [`calendar`]: days as they are in the Netherlands;
//! - [`vocab`]: the closed vocabularies (funding domains, life domains, roles, the 18 tasks …);
//! - [`ids`]: the identifiers of households, members, goals, …;
//! - [`event`]: the events of a household's stream and their JSON payloads;
//! - [`state`]: a household's state, folded from its events;
//! - [`command`]: commands and [`decide`], which checks one against the state;
//! - [`measure`]: measurement instruments as data, and answers to them;
//! - [`report`]: the effect and cost report over many households, aggregates only;
//! - [`changes`]: what changed in plans, goals and agreements between two moments;
//! - [`timeline`]: each event as an entry of the unified timeline;
//! - [`validate`]: field checks and the documented limits;
//! - `error`: [`DomainError`].
//!
//! One household is one consistency boundary: a command is decided against that household's
//! state alone, and its events are appended to that household's stream.

pub mod access;
pub mod calendar;
pub mod caseload;
pub mod changes;
pub mod command;
mod error;
pub mod event;
pub mod ids;
pub mod measure;
pub mod report;
pub mod signals;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timeline;
pub mod validate;
pub mod vocab;

pub use command::{Command, decide};
pub use error::DomainError;
pub use event::{
    AgreementTerms, ContactDetails, DomainEvent, GrantTerms, Grantee, Identity, MemberDetails,
    Party, SCHEMA_VERSION,
};
pub use state::Household;
