//! Errors as FHIR answers them: an `OperationOutcome` with the HTTP status that fits, naming the
//! element or parameter at fault.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_sdk::r4b::codes::{IssueSeverity, IssueType};
use fhir_sdk::r4b::resources::{OperationOutcome, OperationOutcomeIssue, Resource};
use naast_app::households::AppError;
use naast_domain::DomainError;

/// Longest diagnostics text sent: a value quoted back is never allowed to grow an answer.
const MAX_DIAGNOSTICS: usize = 1_000;

/// A request that could not be served, as it is answered.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The HTTP status.
    pub status: StatusCode,
    /// The issue type.
    pub code: IssueType,
    /// What went wrong, for people.
    pub diagnostics: String,
    /// The element or search parameter at fault (FHIRPath), if one is.
    pub expression: Option<String>,
}

impl Failure {
    /// A failure with `status` and issue `code`.
    pub fn new(status: StatusCode, code: IssueType, diagnostics: impl Into<String>) -> Self {
        let mut diagnostics: String = diagnostics.into();
        if diagnostics.len() > MAX_DIAGNOSTICS {
            let mut end = MAX_DIAGNOSTICS;
            while !diagnostics.is_char_boundary(end) {
                end -= 1;
            }
            diagnostics.truncate(end);
            diagnostics.push('…');
        }
        Self {
            status,
            code,
            diagnostics,
            expression: None,
        }
    }

    /// Names the element or parameter at fault.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }

    /// 400: a request FHIR does not allow, or a parameter naast does not understand.
    pub fn bad_request(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, IssueType::Invalid, diagnostics)
    }

    /// 404: no such resource, type or route.
    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, IssueType::NotFound, diagnostics)
    }

    /// 403: the caller may not.
    pub fn forbidden(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, IssueType::Forbidden, diagnostics)
    }

    /// 500: a fault of the service (logged; the caller is told little).
    pub fn internal(what: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "{what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueType::Exception,
            format!("{what}; the fault is logged"),
        )
    }

    /// The `OperationOutcome` of this failure.
    pub fn outcome(&self) -> Option<OperationOutcome> {
        let issue = OperationOutcomeIssue::builder()
            .severity(IssueSeverity::Error)
            .code(self.code)
            .diagnostics(self.diagnostics.clone())
            .expression(self.expression.iter().cloned().map(Some).collect())
            .build()
            .ok()?;
        OperationOutcome::builder()
            .issue(vec![Some(issue)])
            .build()
            .ok()
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = self
            .outcome()
            .map(Resource::from)
            .and_then(|outcome| serde_json::to_vec(&outcome).ok())
            .unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::FHIR_JSON),
        );
        response
    }
}

impl From<AppError> for Failure {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Domain(DomainError::InvalidArgument { field, reason }) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                IssueType::Invalid,
                format!("{field}: {reason}"),
            )
            .at(field),
            AppError::Domain(e @ DomainError::AlreadyExists { .. }) => {
                Self::new(StatusCode::CONFLICT, IssueType::Duplicate, e.to_string())
            }
            AppError::Domain(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                IssueType::BusinessRule,
                e.to_string(),
            ),
            AppError::Conflict { .. } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                IssueType::Conflict,
                error.to_string(),
            ),
            AppError::RequestIdReused(_) => Self::new(
                StatusCode::CONFLICT,
                IssueType::Duplicate,
                error.to_string(),
            ),
            AppError::Contended => {
                Self::new(StatusCode::CONFLICT, IssueType::Conflict, error.to_string())
            }
            AppError::Denied(reason) => Self::forbidden(reason),
            AppError::Audit(e) => {
                tracing::error!(error = %e, "the audit log is unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    IssueType::Transient,
                    "the audit log is unavailable",
                )
            }
            AppError::Unavailable(reason) => {
                tracing::error!(error = %reason, "a store is unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    IssueType::Transient,
                    reason,
                )
            }
            AppError::Log(e @ naast_eventlog::Error::DiskFull { .. }) => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                IssueType::Transient,
                e.to_string(),
            ),
            AppError::Log(
                e @ (naast_eventlog::Error::Poisoned(_) | naast_eventlog::Error::Closed),
            ) => {
                tracing::warn!(error = %e, "event log unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    IssueType::Transient,
                    "the event log does not accept writes right now; retry later with the same request id",
                )
            }
            AppError::Log(e) => Self::internal("the event log failed", e),
            AppError::BadEvent { .. } => Self::internal("a stored event cannot be read", error),
            AppError::Vault(e) => Self::internal("the key store failed", e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_refused_for_a_full_disk_is_insufficient_storage_and_transient() {
        let refused = Failure::from(AppError::Log(naast_eventlog::Error::DiskFull {
            free_bytes: 3 * 1024 * 1024,
            min_free_bytes: 256 * 1024 * 1024,
        }));
        assert_eq!(refused.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(refused.code, IssueType::Transient);
        assert!(
            refused.diagnostics.contains("disk"),
            "{}",
            refused.diagnostics
        );
        let body = refused.into_response();
        assert_eq!(body.status(), StatusCode::INSUFFICIENT_STORAGE);
    }

    #[test]
    fn a_log_that_stopped_after_a_failed_sync_is_unavailable_not_an_internal_error() {
        let refused = Failure::from(AppError::Log(naast_eventlog::Error::Poisoned(
            "sync: no space left on device".into(),
        )));
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.code, IssueType::Transient);
        // The storage engine's own words stay in the server's log.
        assert!(
            !refused.diagnostics.contains("sync"),
            "{}",
            refused.diagnostics
        );
    }
}
