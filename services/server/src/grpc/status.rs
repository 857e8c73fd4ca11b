//! Every event-log error becomes one gRPC status, here and nowhere else.

use naast_eventlog::Error;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Most characters of any text in an error status (message, field, description). Callers quote
/// their values with [`naast_domain::validate::quote`]; this bounds whatever else ends up there,
/// so an error always fits the 16 KiB of metadata that standard gRPC clients accept.
pub const MAX_ERROR_CHARS: usize = 1_000;

/// `text` cut to [`MAX_ERROR_CHARS`].
pub fn bounded(text: String) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        None => text,
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// `INVALID_ARGUMENT` with a `google.rpc.BadRequest` naming the field.
pub fn invalid_argument(field: impl Into<String>, description: impl Into<String>) -> Status {
    let (field, description) = (bounded(field.into()), bounded(description.into()));
    Status::with_error_details(
        Code::InvalidArgument,
        format!("invalid {field}: {description}"),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

/// The status for an event-log error. Unexpected failures are logged here and reach the caller
/// without their internals.
pub fn from_log_error(err: Error) -> Status {
    match err {
        Error::InvalidInput { field, reason } => invalid_argument(field, reason),
        Error::WrongExpectedRevision {
            ref stream_id,
            expected,
            actual,
        } => {
            let metadata = [
                ("stream_id".to_owned(), stream_id.clone()),
                ("expected".to_owned(), expected.to_string()),
                (
                    "actual_revision".to_owned(),
                    actual.map(|r| r.to_string()).unwrap_or_default(),
                ),
            ];
            Status::with_error_details(
                Code::Aborted,
                err.to_string(),
                ErrorDetails::with_error_info("WRONG_EXPECTED_REVISION", "naast", metadata),
            )
        }
        Error::DuplicateEventId { .. } => Status::already_exists(err.to_string()),
        Error::DiskFull {
            free_bytes,
            min_free_bytes,
        } => Status::with_error_details(
            Code::ResourceExhausted,
            err.to_string(),
            ErrorDetails::with_error_info(
                "DISK_FULL",
                "naast",
                [
                    ("free_bytes".to_owned(), free_bytes.to_string()),
                    ("min_free_bytes".to_owned(), min_free_bytes.to_string()),
                ],
            ),
        ),
        Error::Poisoned(_) | Error::Closed => {
            tracing::warn!(error = %err, "event log unavailable");
            Status::unavailable(err.to_string())
        }
        Error::Storage(ref e) if e.operation == "write" || e.operation == "sync" => {
            tracing::error!(error = %err, "event log failure");
            // sled has no rollback, and flushes in the background: part or all of it may
            // reach the disk.
            Status::unavailable(
                "a storage failure: whether this was written is unknown; retry with the same options.request_id (the service refuses writes until it is restarted)",
            )
        }
        Error::Locked { .. } | Error::Storage(_) => {
            tracing::error!(error = %err, "event log failure");
            Status::internal("internal storage failure")
        }
        Error::Corrupt { .. } => {
            tracing::error!(error = %err, "event log corruption");
            Status::data_loss("a stored event is damaged; the operators have been alerted")
        }
    }
}

/// The status for a household command or read that failed.
pub fn from_app_error(err: crate::households::AppError) -> Status {
    use crate::households::AppError;
    use naast_domain::DomainError;
    match err {
        AppError::Domain(DomainError::InvalidArgument { field, reason }) => {
            invalid_argument(field, reason)
        }
        AppError::Domain(
            ref e @ DomainError::NotFound {
                ref field,
                what,
                ref id,
            },
        ) => resource_error(Code::NotFound, field, what, id, "not in this household", e),
        AppError::Domain(
            ref e @ DomainError::AlreadyExists {
                ref field,
                what,
                ref id,
            },
        ) => resource_error(
            Code::AlreadyExists,
            field,
            what,
            id,
            "already in this household",
            e,
        ),
        AppError::Domain(DomainError::FailedPrecondition(reason)) => {
            Status::failed_precondition(bounded(reason))
        }
        AppError::Conflict { expected, actual } => Status::with_error_details(
            Code::Aborted,
            err.to_string(),
            ErrorDetails::with_error_info(
                "WRONG_EXPECTED_REVISION",
                "naast",
                [
                    ("expected_revision".to_owned(), expected.to_string()),
                    (
                        "actual_revision".to_owned(),
                        actual.map(|r| r.to_string()).unwrap_or_default(),
                    ),
                ],
            ),
        ),
        AppError::RequestIdReused(_) => Status::with_error_details(
            Code::AlreadyExists,
            err.to_string(),
            ErrorDetails::with_bad_request_violation("options.request_id", err.to_string()),
        ),
        AppError::Contended => Status::aborted(err.to_string()),
        AppError::BadEvent { .. } => {
            tracing::error!(error = %err, "undecodable event in a household stream");
            Status::internal(
                "a stored event of this household cannot be read; the operators have been alerted",
            )
        }
        AppError::Log(e) => from_log_error(e),
        AppError::Denied(reason) => Status::permission_denied(bounded(reason)),
        AppError::Vault(_) => {
            tracing::error!(error = %err, "key store failure");
            Status::internal("the key store failed; nothing was written")
        }
        AppError::Unavailable(reason) => {
            tracing::error!(error = %reason, "a store is unavailable");
            Status::unavailable(bounded(reason))
        }
        AppError::Audit(e) => {
            tracing::error!(error = %e, "audit log failure: access refused");
            Status::unavailable("the audit log is unavailable, so no access can be given")
        }
    }
}

/// A status about a missing or existing thing, naming the request field that refers to it.
fn resource_error(
    code: Code,
    field: &str,
    what: &str,
    id: &str,
    description: &str,
    error: &impl std::fmt::Display,
) -> Status {
    let message = bounded(error.to_string());
    let mut details = ErrorDetails::with_bad_request_violation(bounded(field.to_owned()), &message);
    details.set_resource_info(what, bounded(id.to_owned()), "", description);
    Status::with_error_details(code, message, details)
}

/// Lets an administrator through (and without authentication, everyone), recording the
/// operation on `objects` in the audit log, granted or refused with `refusal`.
pub async fn admin_only(
    calling: &crate::auth::layer::Calling,
    auditor: Option<&crate::audit::Auditor>,
    objects: Vec<String>,
    refusal: &'static str,
) -> Result<(), Status> {
    let crate::auth::layer::Calling::Caller(caller) = calling else {
        return Ok(());
    };
    let auditor = auditor.ok_or_else(|| {
        Status::failed_precondition("there is no audit log: authentication is switched off")
    })?;
    let refused = (caller.principal.role != naast_domain::vocab::PrincipalRole::Administrator)
        .then_some(refusal);
    caller
        .admin_operation(auditor, None, objects, refused)
        .await
        .map_err(from_app_error)
}
