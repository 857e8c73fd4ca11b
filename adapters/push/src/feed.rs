//! The change feed of one PGO platform: which households whose family granted it access
//! changed, and in what, at which cursor (the position of the change's last event in the global
//! log). A platform keeps the cursor of the last change it handled and continues after it.
//!
//! Whether the platform may see a household is decided on the household as it stood right
//! after each event, by the family's grants to the platform alone (as for push): a change is
//! shown while it may; the event that takes its sight away (a revocation, a grant narrowed to
//! nothing, the erasure) is shown once as `Withdrawn`, and nothing after it. An erasure's
//! tombstone names the platforms that had a grant, so a platform that catches up after the
//! household's events became unreadable still learns to remove it.

use naast_app::households::{AppError, Households};
use naast_domain::Household;
use naast_domain::event::DomainEvent;
use naast_domain::ids::HouseholdId;
use naast_eventlog::RecordedEvent;
use naast_fhir_http::resources::Sight;
use std::collections::{BTreeSet, HashMap};

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// Members, network, the household itself.
    Household,
    /// Plans.
    Plans,
    /// Goals.
    Goals,
    /// Agreements and their answers.
    Agreements,
    /// Indications and decisions.
    Indications,
    /// Notes and logbook entries.
    Notes,
    /// What the platform may see.
    Access,
    /// The platform may no longer see the household.
    Withdrawn,
}

/// One change of one household.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The position of its last event: continue after it.
    pub cursor: u64,
    /// The household.
    pub household: HouseholdId,
    /// The household's revision after it.
    pub revision: u64,
    /// What changed.
    pub kinds: BTreeSet<ChangeKind>,
    /// When it was recorded (µs since 1970).
    pub recorded_at_micros: u64,
    /// The grants that let the platform see it (none for a withdrawal).
    pub basis: Vec<String>,
}

/// What an event changes, as a platform sees it.
pub fn kinds_of(event: &DomainEvent) -> &'static [ChangeKind] {
    use ChangeKind as K;
    use DomainEvent as E;
    match event {
        E::HouseholdRegistered { .. }
        | E::IdentityLinked { .. }
        | E::MemberAdded { .. }
        | E::MemberUpdated { .. }
        | E::MemberRemoved { .. }
        | E::ContactAdded { .. }
        | E::ContactUpdated { .. }
        | E::ContactRemoved { .. }
        | E::SupportPhaseChanged { .. }
        | E::CheckInThresholdSet { .. }
        | E::FamilyTypeSet { .. }
        | E::EvaluationObjectionSet { .. } => &[K::Household],
        E::HouseholdErased { .. } => &[K::Withdrawn],
        E::AccessGranted { .. } | E::AccessRevoked { .. } => &[K::Access],
        // Requests for access are between the family and the one asking.
        E::AccessRequested { .. } | E::AccessRequestDeclined { .. } => &[],
        E::PlanDrafted { .. }
        | E::PlanRevised { .. }
        | E::PlanActivated { .. }
        | E::PlanEvaluated { .. }
        | E::PlanClosed { .. } => &[K::Plans],
        E::GoalSet { .. }
        | E::GoalUpdated { .. }
        | E::GoalProgressNoted { .. }
        | E::GoalAchieved { .. }
        | E::GoalAbandoned { .. }
        | E::GoalReopened { .. } => &[K::Goals],
        E::AgreementProposed { .. }
        | E::AgreementAccepted { .. }
        | E::AgreementRejected { .. }
        | E::AgreementAmended { .. }
        | E::AgreementEnded { .. }
        | E::AgreementNotDelivered { .. }
        | E::AgreementCarriedOver { .. } => &[K::Agreements],
        E::IndicationRecorded { .. } | E::FundingTransitionRecorded { .. } => {
            &[K::Indications, K::Agreements]
        }
        E::LogbookEntryAdded { .. }
        | E::NoteAdded { .. }
        | E::CheckInRecorded { .. }
        | E::MeasurementRecorded { .. } => &[K::Notes],
    }
}

/// The feed of one platform over a run of consecutive events of the log.
pub struct Feed {
    households: Households,
    issuer: String,
    client_id: String,
    /// Each household seen so far, as it stands after the last event looked at.
    states: HashMap<HouseholdId, Household>,
    /// Whether the events of one command in one batch make one change.
    merge: bool,
}

impl Feed {
    /// The feed of the platform `issuer`/`client_id`.
    pub fn new(households: Households, issuer: String, client_id: String) -> Self {
        Self {
            households,
            issuer,
            client_id,
            states: HashMap::new(),
            merge: true,
        }
    }

    /// A change per event: the changes, and their cursors, do not depend on how the log is
    /// read in batches (a webhook's message ids are made from them).
    pub fn per_event(mut self) -> Self {
        self.merge = false;
        self
    }

    /// Whether the platform may see anything of `state` (as push decides it).
    fn sees(&self, state: &Household) -> bool {
        let today = naast_domain::calendar::dutch_today();
        !Sight::of_platform(state, &self.issuer, &self.client_id, today).is_blind()
    }

    fn basis(&self, state: &Household) -> Vec<String> {
        let today = naast_domain::calendar::dutch_today();
        naast_domain::access::platform_grants(state, &self.issuer, &self.client_id, today)
    }

    /// The changes among `events` (consecutive events of the log, in order): the events of one
    /// command make one change, unless [`Feed::per_event`].
    pub fn changes(&mut self, events: &[RecordedEvent]) -> Result<Vec<Change>, AppError> {
        let mut out: Vec<Change> = Vec::new();
        let mut commands: Vec<Option<uuid::Uuid>> = Vec::new();
        for recorded in events {
            let Some(household) = HouseholdId::of_stream(&recorded.stream_id) else {
                continue;
            };
            if !self.states.contains_key(&household) {
                let before = match recorded.revision.checked_sub(1) {
                    Some(until) => self.households.state_at(household, until)?,
                    None => Household::default(),
                };
                self.states.insert(household, before);
            }
            let saw = self.states.get(&household).is_some_and(|s| self.sees(s));
            // Unreadable: the household was erased since; its tombstone follows.
            let Some(stored) = self.households.open(household, recorded)? else {
                continue;
            };
            if let Some(state) = self.states.get_mut(&household) {
                state.apply(&stored.event);
            }
            let named = matches!(&stored.event, DomainEvent::HouseholdErased { platforms }
                if platforms.iter().any(|p| p.issuer == self.issuer && p.client_id == self.client_id));
            let sees = self.states.get(&household).is_some_and(|s| self.sees(s));
            let kinds: BTreeSet<ChangeKind> = if sees {
                kinds_of(&stored.event).iter().copied().collect()
            } else if saw || named {
                BTreeSet::from([ChangeKind::Withdrawn])
            } else {
                continue;
            };
            if kinds.is_empty() {
                continue;
            }
            let basis = match self.states.get(&household) {
                Some(state) if sees => self.basis(state),
                _ => Vec::new(),
            };
            let change = Change {
                cursor: recorded.position,
                household,
                revision: recorded.revision,
                kinds,
                recorded_at_micros: recorded.recorded_at_micros,
                basis,
            };
            let command = recorded.metadata.correlation_id;
            match out.last_mut() {
                Some(last)
                    if self.merge
                        && last.household == household
                        && last.cursor + 1 == recorded.position
                        && command.is_some()
                        && commands.last() == Some(&command)
                        && !last.kinds.contains(&ChangeKind::Withdrawn)
                        && !change.kinds.contains(&ChangeKind::Withdrawn) =>
                {
                    last.cursor = change.cursor;
                    last.revision = change.revision;
                    last.recorded_at_micros = change.recorded_at_micros;
                    last.kinds.extend(change.kinds);
                    last.basis = change.basis;
                }
                _ => {
                    out.push(change);
                    commands.push(command);
                }
            }
        }
        Ok(out)
    }
}
