//! Resources read off a household's events rather than its state: its notes and logbook entries
//! (`Communication`), and who recorded each version of a resource (`Provenance`). Both replay the
//! household's stream up to the revision the read was decided on.

use crate::Facade;
use crate::handlers::stamp;
use crate::outcome::Failure;
use crate::resources::{self, Kind, Sight, Unseen};
use fhir_sdk::r4b::resources::Resource;
use naast_domain::ids::HouseholdId;
use uuid::Uuid;

/// Histories at least this long are opened on two threads.
const PARALLEL_FROM: u64 = 2_000;

/// One resource read off the events: its id and the resource.
pub struct Found {
    /// Its id.
    pub id: Uuid,
    /// The resource, with its version.
    pub resource: Resource,
}

impl Facade {
    /// The notes and logbook entries of `household` up to revision `until` that `sight` shows
    /// (`only`: just that one), oldest first, with `state` (the household as the read was
    /// decided on) naming the people they concern. Only those events are opened; a long
    /// history is opened in two halves at once, one per core.
    pub(crate) fn communications(
        &self,
        household: HouseholdId,
        state: &naast_domain::Household,
        until: Option<u64>,
        sight: &Sight,
        only: Option<Uuid>,
    ) -> Result<Vec<Found>, Failure> {
        let Some(until) = until else {
            return Ok(Vec::new());
        };
        if only.is_some() || until < PARALLEL_FROM {
            return self.communications_between(household, state, 0, until, sight, only);
        }
        let middle = until / 2;
        let (first, second) = std::thread::scope(|scope| {
            let first = scope
                .spawn(|| self.communications_between(household, state, 0, middle, sight, None));
            let second =
                self.communications_between(household, state, middle + 1, until, sight, None);
            (first.join(), second)
        });
        let mut found = first
            .map_err(|_| Failure::internal("opening notes", "a thread opening notes panicked"))??;
        found.extend(second?);
        Ok(found)
    }

    /// [`Facade::communications`] of the revisions `from..=until`.
    fn communications_between(
        &self,
        household: HouseholdId,
        state: &naast_domain::Household,
        from: u64,
        until: u64,
        sight: &Sight,
        only: Option<Uuid>,
    ) -> Result<Vec<Found>, Failure> {
        let mut found = Vec::new();
        let mut failed = None;
        let everything = sight.timeline.as_ref().is_some_and(|v| v.is_everything());
        // The Dutch day of an instant changes only at whole UTC hours (midnight, and the clock
        // changes at 01:00 UTC), so one conversion serves every event of the same hour.
        let mut hour: Option<(u64, time::Date)> = None;
        self.households.events_of(
            household,
            from,
            until,
            &["NoteAdded", "LogbookEntryAdded"],
            |recorded, stored| {
                if let Some(id) = only
                    && stored.event.introduces() != Some(id)
                {
                    return;
                }
                let day = stored.happened_on.unwrap_or_else(|| {
                    let this = recorded.recorded_at_micros / 3_600_000_000;
                    match hour {
                        Some((h, day)) if h == this => day,
                        _ => {
                            let day = naast_projections::recorded_on(recorded);
                            hour = Some((this, day));
                            day
                        }
                    }
                });
                // A limited view decides on the entry's life and funding domains.
                let visible = everything
                    || sight.timeline.as_ref().is_some_and(|view| {
                        view.entry(&naast_domain::timeline::entry(state, &stored.event, day))
                    });
                if !visible {
                    return;
                }
                match naast_fhir::communications::communication(
                    household,
                    state,
                    &stored.event,
                    day,
                ) {
                    Ok(Some((id, communication))) => found.push(Found {
                        id: id.0,
                        resource: communication.into(),
                    }),
                    Ok(None) => {}
                    Err(e) => failed = Some(e),
                }
            },
        )?;
        match failed {
            Some(e) => Err(Failure::internal("mapping a note", e)),
            None => Ok(found),
        }
    }

    /// Each version of `kind`/`id` in `household` up to revision `until` that `sight` shows,
    /// oldest first: every revision at which the resource as mapped changed (a note's or an
    /// entry's, the one that added it), with the audit record of the command that made it.
    pub(crate) fn changes(
        &self,
        household: HouseholdId,
        kind: Kind,
        id: Uuid,
        until: Option<u64>,
        sight: &Sight,
        mut f: impl FnMut(Change),
    ) -> Result<(), Failure> {
        let Some(until) = until else {
            return Ok(());
        };
        let mut last: Option<serde_json::Value> = None;
        // The command a run of events belongs to: its stamp is on its first event.
        let mut command: Option<(Option<Uuid>, Option<serde_json::Value>)> = None;
        let mut failed = None;
        self.households
            .replay(household, until, |recorded, stored, state| {
                let correlation = recorded.metadata.correlation_id;
                if let Some(stamp) = &stored.command {
                    command = Some((correlation, stamp.audit.clone()));
                } else if command
                    .as_ref()
                    .is_some_and(|(c, _)| c.is_none() || *c != correlation)
                {
                    command = None;
                }
                let day = naast_projections::recorded_on(recorded);
                let mapped = match kind {
                    Kind::Communication if stored.event.introduces() == Some(id) => {
                        naast_fhir::communications::communication(
                            household,
                            state,
                            &stored.event,
                            day,
                        )
                        .map(|found| found.map(|(_, c)| Resource::from(c)))
                    }
                    Kind::Communication => Ok(None),
                    _ => match resources::one(household, state, kind, id, sight, day) {
                        Ok(resource) => Ok(Some(resource)),
                        Err(Unseen::Map(e)) => Err(e),
                        Err(Unseen::Missing | Unseen::Denied(_)) => Ok(None),
                    },
                };
                let resource = match mapped {
                    Ok(Some(resource)) => resource,
                    Ok(None) => return,
                    Err(e) => {
                        failed = Some(e);
                        return;
                    }
                };
                let value = serde_json::to_value(&resource).ok();
                if value == last {
                    return;
                }
                let created = last.is_none();
                last = value;
                f(Change {
                    event: recorded.id,
                    revision: recorded.revision,
                    at: recorded.recorded_at_micros,
                    actor: recorded.metadata.actor.as_deref(),
                    command: command.as_ref().and_then(|(_, r)| r.as_ref()),
                    created,
                    resource,
                });
            })?;
        match failed {
            Some(e) => Err(Failure::internal("mapping a resource", e)),
            None => Ok(()),
        }
    }

    /// The provenance of every version of `kind`/`id` in `household` up to revision `until`
    /// that `sight` shows, oldest first.
    pub(crate) fn provenance(
        &self,
        household: HouseholdId,
        kind: Kind,
        id: Uuid,
        until: Option<u64>,
        sight: &Sight,
    ) -> Result<Vec<Found>, Failure> {
        let mut found = Vec::new();
        let mut failed = None;
        self.changes(household, kind, id, until, sight, |change| {
            let record: Option<naast_app::audit::Record> = change
                .command
                .and_then(|value| serde_json::from_value(value.clone()).ok());
            match naast_fhir::provenance::provenance(
                change.event,
                format!("{}/{id}/_history/{}", kind.name(), change.revision),
                change.at,
                change.created,
                record.as_ref(),
                change.actor,
            ) {
                Ok(provenance) => found.push(Found {
                    id: change.event,
                    resource: stamp(provenance.into(), change.revision, change.at),
                }),
                Err(e) => failed = Some(e),
            }
        })?;
        match failed {
            Some(e) => Err(Failure::internal("mapping provenance", e)),
            None => Ok(found),
        }
    }
}

/// One version of a resource, as [`Facade::changes`] finds it.
pub(crate) struct Change<'a> {
    /// The event that made it.
    pub event: Uuid,
    /// The household's revision it arose at.
    pub revision: u64,
    /// When (µs since 1970).
    pub at: u64,
    /// Who, as the event's metadata names them.
    pub actor: Option<&'a str>,
    /// The audit record of the command that made it, as stamped on the command's first event.
    pub command: Option<&'a serde_json::Value>,
    /// It is the resource's first version.
    pub created: bool,
    /// The resource as it stood then.
    pub resource: Resource,
}
