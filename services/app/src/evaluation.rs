//! Evaluation across households: the catalogue of measurement instruments and the effect and
//! cost report, the same for every transport.
//!
//! - **Instruments** are events in their own stream ([`INSTRUMENTS_STREAM`]), folded into a
//!   [`Catalogue`] at start. Until one is used, a new data directory offers the seeded ones
//!   ([`naast_domain::measure::seed`]); they are written to the stream before the first answer
//!   to any instrument, or the first new version, so every answer refers to a definition in the
//!   log (and a data directory nobody measured in holds none of them). Service administrators
//!   define new versions.
//! - **The effect report** is for programme evaluators. It is computed from the read models'
//!   report rows once they have caught up with everything committed when it was asked, and it
//!   shows aggregates only ([`naast_domain::report`]). Before it is answered, its fingerprint is
//!   compared with that of every report answered before, by any evaluator: one that differs from
//!   an earlier one in fewer than five households is refused, because subtracting the two would
//!   show what those households contributed. The fingerprints of answered reports are kept in a
//!   store of their own (`disclosures`, beside the event log; back it up with it: without it, a
//!   restored service forgets what it disclosed), durable before the report is returned, and every
//!   report asked, answered or refused, is in the audit log. With the event log in PostgreSQL the
//!   store is a log there (`naast_disclosures`) every node shares: a report is recorded with the
//!   revision of the disclosures it was compared with, so of two reports answered at once on two
//!   nodes the second is compared with the first before it can be recorded.

use crate::audit::{self, Auditor};
use crate::auth::caller::Calling;
use crate::households::AppError;
use naast_domain::DomainError;
use naast_domain::measure::{Catalogue, INSTRUMENT_DEFINED, INSTRUMENTS_STREAM, Instrument};
use naast_domain::report::{self, Cohort, Fingerprint, Report};
use naast_domain::vocab::PrincipalRole;
use naast_eventlog::{Direction, EventLog, ExpectedRevision, NewEvent};
use naast_projections::Projections;
use sha2::Digest;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How long a report waits for the read models to catch up with what was committed when it
/// was asked.
const CATCH_UP: Duration = Duration::from_secs(10);

/// Most instrument definitions read per page of their stream.
const PAGE: usize = 1_000;

/// The instruments and the effect report over one event log and its read models.
#[derive(Clone)]
pub struct Evaluation {
    log: EventLog,
    projections: Projections,
    auditor: Option<Auditor>,
    catalogue: Arc<RwLock<Catalogue>>,
    disclosures: Disclosures,
    /// The fingerprints of every report answered, in memory for the comparison.
    answered: Arc<tokio::sync::Mutex<Answered>>,
    /// Set once the instruments' stream holds the catalogue (until then it is the seed, not yet
    /// written): checked without a lock by every measurement.
    seeded: Arc<tokio::sync::OnceCell<()>>,
    /// Held while a definition is written, so definitions follow on one at a time.
    defining: Arc<tokio::sync::Mutex<()>>,
    /// The next revision of the instruments' stream to read into the catalogue (definitions
    /// another node wrote, on a log several nodes share).
    definitions_next: Arc<std::sync::Mutex<u64>>,
    /// The log's head when the catalogue last read the stream: nothing new to read while it
    /// stands.
    definitions_read_at: Arc<std::sync::atomic::AtomicU64>,
    hourly_rate_cents: u32,
}

/// Where the fingerprints of answered reports are kept.
#[derive(Clone)]
pub enum DisclosureStore<'a> {
    /// A store of this node's own, in this directory.
    Folder(&'a Path),
    /// A log in PostgreSQL, shared by every node on it ([`open_shared_disclosures`]).
    Shared(EventLog),
}

/// Opens the disclosures' log in the PostgreSQL database at `url`: the record of disclosed
/// reports every node on that database shares.
pub fn open_shared_disclosures(url: &str) -> Result<EventLog, AppError> {
    Ok(EventLog::open_postgres_table(
        url,
        DISCLOSURES_TABLE,
        naast_eventlog::Options {
            metrics_name: "disclosures",
            ..naast_eventlog::Options::default()
        },
    )?)
}

/// Writes the record of disclosed reports a backup holds (see
/// [`Evaluation::backup_disclosures`]) into `log`, a disclosures' log that holds none yet, and
/// makes it durable: a restore into PostgreSQL. Entries that are no disclosed report are
/// refused, naming what they are.
pub async fn restore_disclosures(
    log: &EventLog,
    entries: &[naast_eventlog::storage::TreeEntry],
) -> Result<usize, AppError> {
    for (tree, _, value) in entries {
        if tree != "answered" {
            return Err(AppError::Unavailable(format!(
                "the backup's record of disclosed reports holds an entry of {tree:?}, which is no disclosed report"
            )));
        }
        decode_fingerprint(value)?;
    }
    // Appended in runs within the log's limits of one append (a backup of a node on sled holds
    // as many as it answered).
    let mut expected = ExpectedRevision::NoStream;
    let mut run: Vec<NewEvent> = Vec::new();
    let mut run_bytes = 0;
    for (at, (_, _, value)) in entries.iter().enumerate() {
        run_bytes += value.len();
        run.push(NewEvent::new(REPORT_DISCLOSED, value.clone()));
        let full = run.len() == naast_eventlog::limits::MAX_EVENTS_PER_APPEND
            || entries.get(at + 1).is_none_or(|(_, _, next)| {
                run_bytes + next.len() > naast_eventlog::limits::MAX_APPEND_PAYLOAD_BYTES
            });
        if full {
            let appended = log
                .append(DISCLOSURES_STREAM, expected, std::mem::take(&mut run))
                .await?;
            expected = ExpectedRevision::Exact(appended.last_revision);
            run_bytes = 0;
        }
    }
    log.sync().await?;
    Ok(entries.len())
}

/// The table of the disclosures' log in PostgreSQL.
pub const DISCLOSURES_TABLE: &str = "naast_disclosures";
/// Its one stream.
const DISCLOSURES_STREAM: &str = "disclosures";
/// The event type of one answered report's fingerprint.
const REPORT_DISCLOSED: &str = "ReportDisclosed";

#[derive(Clone)]
enum Disclosures {
    Tree(sled::Tree),
    Log(EventLog),
}

/// What is known of the answered reports.
#[derive(Default)]
struct Answered {
    fingerprints: Vec<Fingerprint>,
    /// The disclosures' log: the next revision to read.
    next: u64,
}

impl Evaluation {
    /// The record of disclosed reports, for a backup (see
    /// `naast_eventlog::storage::restore_trees`): without it, a restored service would answer
    /// cohorts that differ by one family from those it disclosed before.
    pub fn backup_disclosures(&self) -> Result<Vec<naast_eventlog::storage::TreeEntry>, AppError> {
        match &self.disclosures {
            Disclosures::Tree(tree) => naast_eventlog::storage::tree_entries(tree)
                .map_err(|e| AppError::Unavailable(format!("the store of disclosed reports: {e}"))),
            // The same entries as the tree's: a backup restores into a data directory.
            Disclosures::Log(log) => {
                let mut entries = Vec::new();
                let mut next = 0;
                loop {
                    let page =
                        log.read_stream(DISCLOSURES_STREAM, next, Direction::Forwards, PAGE)?;
                    let Some(last) = page.last() else { break };
                    next = last.revision + 1;
                    for event in page {
                        let key = sha2::Sha256::digest(&event.payload).to_vec();
                        entries.push(("answered".to_owned(), key, event.payload.to_vec()));
                    }
                }
                entries.sort();
                entries.dedup();
                Ok(entries)
            }
        }
    }
    /// Opens the catalogue from `log` (seeding an empty one) and the store of disclosed reports
    /// in `dir`; the report counts supporters' time at `hourly_rate_cents`.
    pub async fn open(
        log: EventLog,
        projections: Projections,
        auditor: Option<Auditor>,
        dir: &Path,
        hourly_rate_cents: u32,
    ) -> Result<Self, AppError> {
        Self::open_in(
            log,
            projections,
            auditor,
            DisclosureStore::Folder(dir),
            hourly_rate_cents,
        )
        .await
    }

    /// As [`Evaluation::open`], with the disclosed reports kept in `store`.
    pub async fn open_in(
        log: EventLog,
        projections: Projections,
        auditor: Option<Auditor>,
        store: DisclosureStore<'_>,
        hourly_rate_cents: u32,
    ) -> Result<Self, AppError> {
        let mut definitions = Vec::new();
        let mut next = 0;
        loop {
            let page = log.read_stream(INSTRUMENTS_STREAM, next, Direction::Forwards, PAGE)?;
            let Some(last) = page.last() else { break };
            next = last.revision + 1;
            for event in &page {
                if event.event_type != INSTRUMENT_DEFINED {
                    continue;
                }
                let instrument: Instrument =
                    serde_json::from_slice(&event.payload).map_err(|e| AppError::BadEvent {
                        position: event.position,
                        event_type: event.event_type.clone(),
                        reason: e.to_string(),
                    })?;
                definitions.push(instrument);
            }
        }
        let written = !definitions.is_empty();
        if !written {
            definitions = naast_domain::measure::seed();
        }
        let mut answered = Answered::default();
        let disclosures = match store {
            DisclosureStore::Folder(dir) => {
                let db =
                    naast_eventlog::storage::open_sled(dir, 16 * 1024 * 1024).map_err(|e| {
                        AppError::Unavailable(format!("the store of disclosed reports: {e}"))
                    })?;
                let tree = db.open_tree("answered").map_err(store_error)?;
                for item in tree.iter() {
                    let (_, value) = item.map_err(store_error)?;
                    answered.fingerprints.push(decode_fingerprint(&value)?);
                }
                Disclosures::Tree(tree)
            }
            DisclosureStore::Shared(log) => {
                catch_up_disclosures(&log, &mut answered)?;
                Disclosures::Log(log)
            }
        };
        Ok(Self {
            log,
            projections,
            auditor,
            catalogue: Arc::new(RwLock::new(Catalogue::from_definitions(definitions))),
            disclosures,
            answered: Arc::new(tokio::sync::Mutex::new(answered)),
            seeded: Arc::new(tokio::sync::OnceCell::new_with(written.then_some(()))),
            defining: Arc::default(),
            definitions_next: Arc::new(std::sync::Mutex::new(next)),
            definitions_read_at: Arc::default(),
            hourly_rate_cents,
        })
    }

    /// The catalogue as it stands.
    pub fn catalogue(&self) -> Catalogue {
        if let Err(e) = self.follow_definitions() {
            tracing::warn!(error = %e, "cannot read new instrument definitions; the catalogue read before serves");
        }
        self.catalogue
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Version `version` (0: the latest) of instrument `key`, for recording answers to it (its
    /// definition is in the log once this returns); refused naming `field` when there is none.
    pub async fn instrument(
        &self,
        field: &str,
        key: &str,
        version: u32,
    ) -> Result<Instrument, AppError> {
        let instrument = self.find(field, key, version)?;
        self.write_seed().await?;
        Ok(instrument)
    }

    /// Writes the seeded catalogue to the instruments' stream unless it is there.
    async fn write_seed(&self) -> Result<(), AppError> {
        self.seeded
            .get_or_try_init(|| async {
                let events = self
                    .catalogue()
                    .all()
                    .map(definition_event)
                    .collect::<Vec<_>>();
                match self
                    .log
                    .append(INSTRUMENTS_STREAM, ExpectedRevision::NoStream, events)
                    .await
                {
                    // A stream that is there already holds the catalogue this process read at
                    // open.
                    Ok(_) | Err(naast_eventlog::Error::WrongExpectedRevision { .. }) => Ok(()),
                    Err(e) => Err(AppError::from(e)),
                }
            })
            .await
            .map(|_| ())
    }

    /// Takes the definitions written to the instruments' stream since it was last read (on a
    /// log several nodes share, another node's) into the catalogue.
    fn follow_definitions(&self) -> Result<(), AppError> {
        use std::sync::atomic::Ordering;
        let head = self.log.head();
        if self.definitions_read_at.load(Ordering::Acquire) == head {
            return Ok(());
        }
        let mut next = self
            .definitions_next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            let page =
                self.log
                    .read_stream(INSTRUMENTS_STREAM, *next, Direction::Forwards, PAGE)?;
            let Some(last) = page.last() else { break };
            *next = last.revision + 1;
            let mut catalogue = self
                .catalogue
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for event in page.iter().filter(|e| e.event_type == INSTRUMENT_DEFINED) {
                if let Ok(instrument) = serde_json::from_slice::<Instrument>(&event.payload) {
                    // One there already (the seed this catalogue began with) stays.
                    let _ = catalogue.define(instrument);
                }
            }
        }
        self.definitions_read_at.store(head, Ordering::Release);
        Ok(())
    }

    fn find(&self, field: &str, key: &str, version: u32) -> Result<Instrument, AppError> {
        self.follow_definitions()?;
        let catalogue = self
            .catalogue
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        catalogue.get(key, version).cloned().ok_or_else(|| {
            DomainError::not_found(
                field,
                "instrument",
                if version == 0 {
                    key.to_owned()
                } else {
                    format!("{key} version {version}")
                },
            )
            .into()
        })
    }

    /// Adds `instrument` as the next version of its key: for service administrators, recorded
    /// in the audit log. Returns the log position it was written at.
    pub async fn define(&self, calling: &Calling, instrument: Instrument) -> Result<u64, AppError> {
        if let Calling::Caller(caller) = calling {
            let refusal = (caller.principal.role != PrincipalRole::Administrator)
                .then_some("instruments are defined by the service's administrators");
            let auditor = self.audit_log()?;
            caller
                .admin_operation(
                    auditor,
                    None,
                    vec![format!("{}/{}", instrument.key, instrument.version)],
                    refusal,
                )
                .await?;
        }
        // One definition at a time, checked against the catalogue it follows on.
        let _one_at_a_time = self.defining.lock().await;
        self.write_seed().await?;
        self.log.read_the_others().await?;
        self.follow_definitions()?;
        // The catalogue and the revision of the stream it was read up to, together: the
        // definition is checked against that catalogue and appended only if the stream is still
        // there (another node's definition meanwhile refuses it).
        let (mut catalogue, next) = {
            let next = self
                .definitions_next
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let catalogue = self
                .catalogue
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            (catalogue, *next)
        };
        catalogue.define(instrument.clone())?;
        let expected = match next {
            0 => ExpectedRevision::NoStream,
            next => ExpectedRevision::Exact(next - 1),
        };
        let outcome = self
            .log
            .append(
                INSTRUMENTS_STREAM,
                expected,
                vec![definition_event(&instrument)],
            )
            .await?;
        let mut read_up_to = self
            .definitions_next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Unless the catalogue has read it from the stream meanwhile.
        if *read_up_to == next {
            let _ = self
                .catalogue
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .define(instrument);
            *read_up_to = outcome.last_revision + 1;
        }
        Ok(outcome.first_position)
    }

    /// The effect and cost report for `cohort`: for programme evaluators (and embedded use),
    /// refused when it would single out households by subtraction from one answered before.
    pub async fn effect_report(
        &self,
        calling: &Calling,
        cohort: Cohort,
    ) -> Result<Report, AppError> {
        let about = format!(
            "effect report: pilot {}, family type {}, {} to {}, {} to {}",
            cohort.supporter_kind.map_or("all", |k| k.wire_name()),
            cohort.family_type.map_or("all", |t| t.wire_name()),
            cohort.from,
            cohort.to,
            cohort.baseline.wire_name(),
            cohort.follow_up.wire_name(),
        );
        // Recorded in the audit log, allowed or refused (a refusal answers `Denied`).
        let record = |refusal: Option<String>| async move {
            match calling {
                Calling::Caller(caller) => {
                    caller
                        .role_operation(
                            self.audit_log()?,
                            None,
                            vec![about.clone()],
                            refusal.as_deref(),
                            "role:evaluator",
                        )
                        .await
                }
                Calling::Unguarded => refusal.map_or(Ok(()), |r| Err(AppError::Denied(r))),
            }
        };
        if let Calling::Caller(caller) = calling
            && caller.principal.role != PrincipalRole::Evaluator
        {
            const FOR_EVALUATORS: &str = "the effect report is for programme evaluators";
            // A refusal is recorded, then answered as `Denied`.
            record(Some(FOR_EVALUATORS.to_owned())).await?;
            return Err(AppError::Denied(FOR_EVALUATORS.to_owned()));
        }
        if cohort.from > cohort.to {
            return Err(DomainError::invalid("to_date", "the period ends before it begins").into());
        }
        if cohort.baseline == cohort.follow_up {
            return Err(DomainError::invalid(
                "follow_up",
                "compare two different moments (T0 with T1, say)",
            )
            .into());
        }
        let head = self.log.head();
        if head > 0 {
            self.projections
                .wait_for(head - 1, CATCH_UP)
                .await
                .map_err(|e| AppError::Unavailable(format!("the read models: {e}")))?;
        }
        let rows = self
            .projections
            .report_rows()
            .map_err(|e| AppError::Unavailable(format!("the read models: {e}")))?;
        let catalogue = self.catalogue();
        let report = report::effect(
            rows.iter().map(|(id, row)| (*id, row)),
            &cohort,
            &catalogue,
            self.hourly_rate_cents,
            naast_domain::calendar::dutch_today(),
        );
        // Reports are compared and recorded one at a time, so two asked together are compared
        // with each other too (on every node: see `record_disclosure`).
        let mut answered = self.answered.lock().await;
        loop {
            if let Disclosures::Log(log) = &self.disclosures {
                catch_up_disclosures(log, &mut answered)?;
            }
            let Some(differing) = answered
                .fingerprints
                .iter()
                .find_map(|earlier| report::singles_out(earlier, &report.fingerprint))
            else {
                if self
                    .record_disclosure(&mut answered, &report.fingerprint)
                    .await?
                {
                    break;
                }
                continue; // another node recorded one meanwhile: compare with it too
            };
            let reason = format!(
                "this report would differ from one answered before in only {differing} household{}: subtracting the two would show what {} contributed. Ask for a broader cohort or period, or again once at least {} households differ",
                if differing == 1 { "" } else { "s" },
                if differing == 1 {
                    "that household"
                } else {
                    "those households"
                },
                report::MIN_CELL
            );
            // Recorded as refused, and answered as what it is: a precondition the earlier
            // reports set, not a lack of permission.
            return Err(match record(Some(reason.clone())).await {
                Ok(()) | Err(AppError::Denied(_)) => DomainError::FailedPrecondition(reason).into(),
                Err(e) => e,
            });
        }
        drop(answered);
        record(None).await?;
        Ok(report)
    }

    /// Records `fingerprint` as disclosed, durably, unless it was before. `false` when another
    /// node recorded a report after those in `answered` were read: nothing is recorded, and the
    /// report must be compared with that one first.
    async fn record_disclosure(
        &self,
        answered: &mut Answered,
        fingerprint: &Fingerprint,
    ) -> Result<bool, AppError> {
        if fingerprint.is_empty() || answered.fingerprints.contains(fingerprint) {
            return Ok(true);
        }
        let bytes = encode_fingerprint(fingerprint);
        match &self.disclosures {
            Disclosures::Tree(tree) => {
                let key = sha2::Sha256::digest(&bytes);
                if tree
                    .insert(key.as_slice(), bytes)
                    .map_err(store_error)?
                    .is_none()
                {
                    tree.flush_async().await.map_err(store_error)?;
                }
            }
            Disclosures::Log(log) => {
                let expected = match answered.next {
                    0 => ExpectedRevision::NoStream,
                    next => ExpectedRevision::Exact(next - 1),
                };
                let event = NewEvent::new(REPORT_DISCLOSED, bytes);
                match log.append(DISCLOSURES_STREAM, expected, vec![event]).await {
                    Ok(outcome) => answered.next = outcome.last_revision + 1,
                    Err(naast_eventlog::Error::WrongExpectedRevision { .. }) => return Ok(false),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        answered.fingerprints.push(fingerprint.clone());
        Ok(true)
    }

    fn audit_log(&self) -> Result<&Auditor, AppError> {
        self.auditor.as_ref().ok_or_else(|| {
            AppError::Audit(audit::AuditError::Unavailable(
                "no audit log is configured for guarded calls".into(),
            ))
        })
    }
}

fn definition_event(instrument: &Instrument) -> NewEvent {
    // Plain data: serialising cannot fail.
    NewEvent::new(
        INSTRUMENT_DEFINED,
        serde_json::to_vec(instrument).unwrap_or_default(),
    )
}

/// Reads the reports recorded in the disclosures' log since `answered` was read.
fn catch_up_disclosures(log: &EventLog, answered: &mut Answered) -> Result<(), AppError> {
    loop {
        let page = log.read_stream(DISCLOSURES_STREAM, answered.next, Direction::Forwards, PAGE)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        answered.next = last.revision + 1;
        for event in &page {
            let fingerprint = decode_fingerprint(&event.payload)?;
            if !answered.fingerprints.contains(&fingerprint) {
                answered.fingerprints.push(fingerprint);
            }
        }
    }
}

fn store_error(e: sled::Error) -> AppError {
    AppError::Unavailable(format!("the store of disclosed reports: {e}"))
}

fn encode_fingerprint(fingerprint: &Fingerprint) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(fingerprint.len() * 16);
    for (household, contribution) in fingerprint {
        bytes.extend_from_slice(&household.to_be_bytes());
        bytes.extend_from_slice(&contribution.to_be_bytes());
    }
    bytes
}

fn decode_fingerprint(bytes: &[u8]) -> Result<Fingerprint, AppError> {
    if !bytes.len().is_multiple_of(16) {
        return Err(AppError::Unavailable(
            "the store of disclosed reports holds a damaged fingerprint".into(),
        ));
    }
    Ok(bytes
        .chunks_exact(16)
        .map(|c| {
            let (h, v) = c.split_at(8);
            // chunks_exact(16) split at 8: both halves are 8 bytes.
            let h = u64::from_be_bytes(h.try_into().unwrap_or_default());
            let v = u64::from_be_bytes(v.try_into().unwrap_or_default());
            (h, v)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a panic is a failed check
    use super::*;

    fn log() -> EventLog {
        EventLog::with_storage(
            Arc::new(naast_eventlog::MemoryStorage::new()),
            naast_eventlog::Options::default(),
        )
        .unwrap()
    }

    fn entry(tree: &str, bytes: Vec<u8>) -> naast_eventlog::storage::TreeEntry {
        (
            tree.to_owned(),
            sha2::Sha256::digest(&bytes).to_vec(),
            bytes,
        )
    }

    #[tokio::test]
    async fn disclosed_reports_restored_into_a_shared_log_read_back_as_the_backup_held_them() {
        let fingerprints: Vec<Fingerprint> = vec![vec![(1, 10), (2, 20)], vec![(3, 30)]];
        let entries: Vec<_> = fingerprints
            .iter()
            .map(|f| entry("answered", encode_fingerprint(f)))
            .collect();
        let shared = log();
        assert_eq!(restore_disclosures(&shared, &entries).await.unwrap(), 2);
        let mut answered = Answered::default();
        catch_up_disclosures(&shared, &mut answered).unwrap();
        assert_eq!(answered.fingerprints, fingerprints);
        // More than one append may hold: in runs, all of them, in order.
        let many: Vec<Fingerprint> = (0..2_500).map(|n| vec![(n, n + 1)]).collect();
        let entries_many: Vec<_> = many
            .iter()
            .map(|f| entry("answered", encode_fingerprint(f)))
            .collect();
        let large = log();
        assert_eq!(
            restore_disclosures(&large, &entries_many).await.unwrap(),
            2_500
        );
        let mut answered = Answered::default();
        catch_up_disclosures(&large, &mut answered).unwrap();
        assert_eq!(answered.fingerprints, many);
        // Into a log that holds reports already: refused, nothing written twice.
        assert!(restore_disclosures(&shared, &entries).await.is_err());
        assert_eq!(shared.head(), 2);

        // An entry that is no disclosed report, or a damaged one: refused, nothing written.
        for bad in [entry("keys", vec![0; 16]), entry("answered", vec![1, 2, 3])] {
            let fresh = log();
            let refused = restore_disclosures(&fresh, &[entries[0].clone(), bad])
                .await
                .unwrap_err();
            assert!(
                refused.to_string().contains("no disclosed report")
                    || refused.to_string().contains("damaged"),
                "{refused}"
            );
            assert_eq!(fresh.head(), 0);
        }
    }
}
