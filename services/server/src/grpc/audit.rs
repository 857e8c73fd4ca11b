//! `naast.v1.AuditService`: the family's "who looked at our data" and the administrators'
//! search, both recorded in the audit log they read.

use super::convert::{self as c, Vocabulary};
use super::households::{Answer, household, list_page_size, split};
use super::status::{from_app_error, invalid_argument};
use crate::audit::{self, Auditor, Cursor, Filter, Outcome, Stored};
use crate::auth::layer::Calling;
use crate::households::{AppError, Households};
use naast_domain::access::Action;
use naast_domain::vocab::PrincipalRole;
use naast_proto::pb;
use tonic::{Request, Response, Status};

/// The service over the audit log.
#[derive(Clone)]
pub struct AuditApi {
    auditor: Option<Auditor>,
    households: Households,
}

impl AuditApi {
    /// Serves `auditor`'s records; owners of households are found in `households`.
    pub fn new(auditor: Option<Auditor>, households: Households) -> Self {
        Self {
            auditor,
            households,
        }
    }

    fn auditor(&self) -> Result<&Auditor, Status> {
        self.auditor.as_ref().ok_or_else(|| {
            Status::failed_precondition("there is no audit log: authentication is switched off")
        })
    }
}

/// Why the audit log could not be read.
fn read_error(e: AppError) -> Status {
    match e {
        AppError::Audit(e) => {
            tracing::error!(error = %e, "audit log failure");
            Status::unavailable("the audit log cannot be read right now")
        }
        e => from_app_error(e),
    }
}

fn micros(field: &str, t: Option<prost_types::Timestamp>) -> Result<Option<u64>, Status> {
    t.map(|t| {
        u64::try_from(t.seconds)
            .ok()
            .and_then(|s| s.checked_mul(1_000_000))
            .zip(u64::try_from(t.nanos / 1_000).ok())
            .and_then(|(s, n)| s.checked_add(n))
            .ok_or_else(|| invalid_argument(field, "is before 1970 or out of range"))
    })
    .transpose()
}

fn cursor(token: &str) -> Result<Cursor, Status> {
    if token.is_empty() {
        return Ok(Cursor::default());
    }
    Cursor::parse(token)
        .ok_or_else(|| invalid_argument("page_token", "is not a token of a previous page"))
}

fn user_to_proto(u: &audit::User) -> pb::AuditUser {
    pb::AuditUser {
        subject: u.identity.subject.clone(),
        issuer: u.identity.issuer.clone(),
        name: u.name.clone().unwrap_or_default(),
        role: u.role.to_proto(),
        organisation_id: u.organisation.clone().unwrap_or_default(),
        requestor: u.requestor,
    }
}

fn record_to_proto(s: &Stored) -> pb::AuditRecord {
    let r = &s.record;
    pb::AuditRecord {
        event_id: s.id.to_string(),
        operation: r.operation.clone(),
        action: match r.action {
            audit::Action::Create => pb::AuditAction::Create,
            audit::Action::Read => pb::AuditAction::Read,
            audit::Action::Update => pb::AuditAction::Update,
            audit::Action::Delete => pb::AuditAction::Delete,
            audit::Action::Execute => pb::AuditAction::Execute,
        } as i32,
        recorded_at: Some(c::timestamp(s.recorded_at_micros)),
        outcome: match r.outcome {
            Outcome::Allowed => pb::AuditOutcome::Allowed,
            Outcome::Denied => pb::AuditOutcome::Denied,
        } as i32,
        outcome_reason: r.reason.clone().unwrap_or_default(),
        user: r.user.as_ref().map(user_to_proto),
        responsible: r.responsible.as_ref().map(user_to_proto),
        purpose: r.purpose.clone(),
        network_access_point: r.network_access_point.clone().unwrap_or_default(),
        household_id: r.household.map(|h| h.to_string()).unwrap_or_default(),
        object_ids: r.objects.clone(),
        basis: r.basis.clone(),
        emergency: r.emergency,
        source_system: r.source_system.clone().unwrap_or_default(),
        request_id: r.request_id.clone().unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for AuditApi {
    async fn list_access_log(
        &self,
        request: Request<pb::ListAccessLogRequest>,
    ) -> Answer<pb::ListAccessLogResponse> {
        let (calling, r) = split(request)?;
        let id = household(&r.household_id)?;
        let filter = Filter {
            from_micros: micros("from_time", r.from_time)?,
            until_micros: micros("until_time", r.until_time)?,
            ..Filter::default()
        };
        let size = list_page_size(r.page_size, 100)?;
        let from = cursor(&r.page_token)?;
        // Without authentication there is no audit log.
        self.auditor()?;
        // Only the household's owners read who looked at it; this read is recorded first.
        self.households
            .guard_read(&calling, id, Action::Own, Vec::new(), |_, _, _| ())
            .await
            .map_err(from_app_error)?;
        let (records, next) = self
            .households
            .access_log(id, from, size, &filter)
            .map_err(read_error)?;
        Ok(Response::new(pb::ListAccessLogResponse {
            records: records.iter().map(record_to_proto).collect(),
            next_page_token: next.map(Cursor::token).unwrap_or_default(),
        }))
    }

    async fn search_audit_log(
        &self,
        request: Request<pb::SearchAuditLogRequest>,
    ) -> Answer<pb::SearchAuditLogResponse> {
        let (calling, r) = split(request)?;
        let auditor = self.auditor()?;
        let filter = Filter {
            household: c::optional_id("household_id", &r.household_id)?,
            subject: Some(r.subject).filter(|s| !s.is_empty()),
            organisation: Some(r.organisation_id).filter(|s| !s.is_empty()),
            outcome: match pb::AuditOutcome::try_from(r.outcome) {
                Ok(pb::AuditOutcome::Unspecified) => None,
                Ok(pb::AuditOutcome::Allowed) => Some(Outcome::Allowed),
                Ok(pb::AuditOutcome::Denied) => Some(Outcome::Denied),
                Err(_) => {
                    return Err(invalid_argument(
                        "outcome",
                        format!("{} is not an audit outcome", r.outcome),
                    ));
                }
            },
            from_micros: micros("from_time", r.from_time)?,
            until_micros: micros("until_time", r.until_time)?,
        };
        let size = list_page_size(r.page_size, 100)?;
        let from = cursor(&r.page_token)?;
        let Calling::Caller(caller) = &calling else {
            return Err(Status::failed_precondition(
                "authentication is switched off: there is no audit log",
            ));
        };
        let refusal = (caller.principal.role != PrincipalRole::Administrator)
            .then_some("only administrators search the audit log");
        let objects = filter
            .household
            .map(|h| vec![h.to_string()])
            .unwrap_or_default();
        caller
            .admin_operation(auditor, filter.household, objects, refusal)
            .await
            .map_err(super::status::from_app_error)?;
        let (records, next) = self
            .households
            .search_audit_log(from, size, &filter)
            .map_err(read_error)?;
        Ok(Response::new(pb::SearchAuditLogResponse {
            records: records.iter().map(record_to_proto).collect(),
            next_page_token: next.map(Cursor::token).unwrap_or_default(),
        }))
    }
}
