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
        let Some(until) = until else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        let mut last: Option<serde_json::Value> = None;
        // The command a run of events belongs to: its stamp is on its first event.
        let mut command: Option<(Option<Uuid>, Option<naast_app::audit::Record>)> = None;
        let mut failed = None;
        self.households
            .replay(household, until, |recorded, stored, state| {
                let correlation = recorded.metadata.correlation_id;
                if let Some(stamp) = &stored.command {
                    let record = stamp
                        .audit
                        .clone()
                        .and_then(|value| serde_json::from_value(value).ok());
                    command = Some((correlation, record));
                } else if command
                    .as_ref()
                    .is_some_and(|(c, _)| *c != correlation || c.is_none())
                {
                    command = None;
                }
                let day = naast_projections::recorded_on(recorded);
                let version = match kind {
                    Kind::Communication => (stored.event.introduces() == Some(id))
                        .then_some(serde_json::Value::Bool(true)),
                    _ => match resources::one(household, state, kind, id, sight, day) {
                        Ok(resource) => serde_json::to_value(&resource).ok(),
                        Err(Unseen::Map(e)) => {
                            failed = Some(e);
                            None
                        }
                        Err(Unseen::Missing | Unseen::Denied(_)) => None,
                    },
                };
                if version.is_some() && version != last {
                    let created = last.is_none();
                    if kind != Kind::Communication {
                        last = version;
                    }
                    let record = command.as_ref().and_then(|(_, r)| r.as_ref());
                    match naast_fhir::provenance::provenance(
                        recorded.id,
                        format!("{}/{id}/_history/{}", kind.name(), recorded.revision),
                        recorded.recorded_at_micros,
                        created,
                        record,
                        recorded.metadata.actor.as_deref(),
                    ) {
                        Ok(provenance) => found.push(Found {
                            id: recorded.id,
                            resource: stamp(
                                provenance.into(),
                                recorded.revision,
                                recorded.recorded_at_micros,
                            ),
                        }),
                        Err(e) => failed = Some(e),
                    }
                }
            })?;
        match failed {
            Some(e) => Err(Failure::internal("mapping provenance", e)),
            None => Ok(found),
        }
    }
}
