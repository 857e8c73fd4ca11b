//! Who is calling: an authenticated caller (or none, for embedded use) as every transport hands
//! it to the application, the access decisions made for it, and the audit record of its call.
//! Transports put a [`Calling`] in each request (gRPC and HTTP alike, through their
//! authentication layer) and pass it to command execution and reads.

use crate::audit::{self, Auditor, Record};
use crate::auth::Authenticator;
use crate::auth::limits::{CallerKey, KeyedRate};
use crate::households::AppError;
use naast_domain::access::{self, Access, Action, Denied, Principal};
use naast_domain::{Command, Household};
use std::net::SocketAddr;
use std::sync::Arc;

/// The header of a call's request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A call's request id: the client's `x-request-id` when it is one (1 to 128 visible ASCII
/// characters), else a new UUID v7. Every transport asks this before [`Guard::admit`], so a call
/// has one id in its answer, its audit record and its log lines, whichever door it came in by.
pub fn request_id(client: Option<&[u8]>) -> String {
    client
        .filter(|id| (1..=128).contains(&id.len()) && id.iter().all(u8::is_ascii_graphic))
        .and_then(|id| std::str::from_utf8(id).ok())
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// The header naming the purpose of use (NEN 7513), e.g. `care`, `research`.
pub const PURPOSE_HEADER: &str = "naast-purpose";
/// Purpose recorded when the caller names none.
pub const DEFAULT_PURPOSE: &str = "care";
/// Longest purpose recorded.
pub const MAX_PURPOSE_CHARS: usize = 64;

/// Who is calling, put in each request's extensions by the layer.
#[derive(Clone, Debug)]
pub enum Calling {
    /// Authorisation is switched off (benchmarks and embedded use): everything is allowed and
    /// nothing is audited.
    Unguarded,
    /// An authenticated caller.
    Caller(Arc<Caller>),
}

impl Calling {
    /// A permit to open a stream for this call, counted against its caller's limit until the
    /// stream ends; `Err` with the refusal's message when the caller, or the service, has as
    /// many open as it may.
    pub fn open_stream(&self) -> Result<crate::auth::limits::StreamPermit, String> {
        match self {
            Calling::Caller(caller) => match &caller.limits {
                Some(limits) => limits.open_stream(caller.limit_key()),
                None => Ok(crate::auth::limits::StreamPermit::unlimited()),
            },
            Calling::Unguarded => Ok(crate::auth::limits::StreamPermit::unlimited()),
        }
    }

    /// When the call's token expires, as a moment for `tokio::time` (`None`: never). An open
    /// stream ends then with `UNAUTHENTICATED`: a disabled account stops receiving at the
    /// latest when its last token runs out.
    pub fn expiry(&self) -> Option<tokio::time::Instant> {
        let Calling::Caller(caller) = self else {
            return None;
        };
        let until = caller.valid_until?;
        let now = chrono::Utc::now().timestamp();
        let left = std::time::Duration::from_secs(until.saturating_sub(now).max(0).unsigned_abs());
        Some(tokio::time::Instant::now() + left)
    }

    /// Whether this call may do `action` in `household` today (an unguarded one may do
    /// everything).
    pub fn access(&self, household: &Household, action: Action) -> Result<Access, Denied> {
        self.decide(|principal, today| access::authorize(household, principal, action, today))
    }

    /// Whether this call may execute `command` in `household` today (an unguarded one may do
    /// everything).
    pub fn command_access(
        &self,
        household: &Household,
        command: &Command,
    ) -> Result<Access, Denied> {
        self.decide(|principal, today| {
            access::authorize_command(household, principal, command, today)
        })
    }

    fn decide(
        &self,
        authorize: impl FnOnce(&Principal, time::Date) -> Result<Access, Denied>,
    ) -> Result<Access, Denied> {
        match self {
            Calling::Unguarded => Ok(Access::everything(Vec::new())),
            Calling::Caller(caller) => {
                authorize(&caller.principal, naast_domain::calendar::dutch_today())
            }
        }
    }
}

/// An authenticated call.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who, as their token says.
    pub principal: Principal,
    /// The operation called: a gRPC method (`/naast.v1.…/…`), or another transport's name for it.
    pub operation: String,
    /// Their address.
    pub peer: Option<SocketAddr>,
    /// The `x-request-id` header, if any.
    pub request_id: Option<String>,
    /// Purpose of use.
    pub purpose: String,
    /// When its token is refused as expired (`exp` plus the leeway, seconds since 1970): a
    /// stream opened with it ends then. `None`: never (embedded use).
    pub valid_until: Option<i64>,
    /// The limits its streams count against (`None`: none, in embedded use).
    pub limits: Option<crate::auth::limits::Limits>,
}

impl Caller {
    /// The key its limits are counted under: its issuer and subject.
    pub fn limit_key(&self) -> CallerKey {
        limit_key(&self.principal)
    }
}

fn limit_key(principal: &Principal) -> CallerKey {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    principal.identity.issuer.hash(&mut hasher);
    principal.identity.subject.hash(&mut hasher);
    hasher.finish()
}

impl Caller {
    /// An audit record of this call, with `outcome` and the rest to fill in.
    pub fn record(&self, outcome: audit::Outcome) -> Record {
        let (user, responsible) = Record::users(&self.principal);
        Record {
            user: Some(user),
            responsible,
            purpose: self.purpose.clone(),
            network_access_point: self.peer.map(|p| p.to_string()),
            source_system: self.principal.client_id.clone(),
            request_id: self.request_id.clone(),
            ..Record::new(self.operation.clone(), outcome)
        }
    }
}

impl Caller {
    /// Records this call to an operation of the service's administrators — refused for
    /// `refusal` when one is given, else allowed on the administrator role — in `auditor`, and
    /// answers a refusal as [`AppError::Denied`]. A call that concerns a `household` (names its
    /// stream or its id) is recorded as about it, so the family's access log lists it, allowed
    /// or refused (NEN 7513: every access that concerns a client, by whatever service).
    pub async fn admin_operation(
        &self,
        auditor: &Auditor,
        household: Option<naast_domain::ids::HouseholdId>,
        objects: Vec<String>,
        refusal: Option<&str>,
    ) -> Result<(), AppError> {
        self.role_operation(auditor, household, objects, refusal, "role:admin")
            .await
    }

    /// As [`Caller::admin_operation`], for an operation allowed on another role's `basis`
    /// (`role:evaluator`, say).
    pub async fn role_operation(
        &self,
        auditor: &Auditor,
        household: Option<naast_domain::ids::HouseholdId>,
        objects: Vec<String>,
        refusal: Option<&str>,
        basis: &str,
    ) -> Result<(), AppError> {
        let mut record = self.record(match refusal {
            Some(_) => audit::Outcome::Denied,
            None => audit::Outcome::Allowed,
        });
        record.household = household;
        record.objects = objects;
        match refusal {
            Some(reason) => record.reason = Some(reason.to_owned()),
            None => record.basis = vec![basis.to_owned()],
        }
        auditor.record(&record).await?;
        match refusal {
            Some(reason) => Err(AppError::Denied(reason.to_owned())),
            None => Ok(()),
        }
    }
}

/// Authentication, its audit, and encryption at rest, or none of it (`None`).
#[derive(Clone)]
pub struct Guard {
    /// Checks tokens.
    pub authenticator: Authenticator,
    /// Records every call.
    pub auditor: Auditor,
    /// Seals household payloads with per-household keys.
    pub vault: Option<naast_vault::Vault>,
    /// Failed sign-ins per network address.
    pub failures: FailureLimit,
    /// What one caller may use: calls per second, open streams.
    pub limits: crate::auth::limits::Limits,
}

/// Failed sign-ins allowed per network address: a burst, then a steady rate. Past it, a failed
/// sign-in is answered at once as limited and not recorded one by one (a flood of bad tokens
/// would otherwise put a durable audit write per request in every honest caller's way); the
/// limiting itself is recorded once per address per [`FAILURE_WINDOW`]. A valid token is served
/// whatever its address did: a care organisation's staff may share one address.
#[derive(Clone)]
pub struct FailureLimit(KeyedRate<std::net::IpAddr>);

/// Failed sign-ins an address may make at once.
pub const FAILURE_BURST: u32 = 30;
/// Failed sign-ins an address may make per second after its burst.
pub const FAILURES_PER_SECOND: u32 = 5;
/// How long one record of an address's limiting stands for.
pub const FAILURE_WINDOW: std::time::Duration = crate::auth::limits::LIMIT_RECORD_WINDOW;

impl Default for FailureLimit {
    fn default() -> Self {
        Self(KeyedRate::new(FAILURES_PER_SECOND, FAILURE_BURST))
    }
}

/// What a transport knows of a call before it is authenticated, read off its headers and
/// connection.
#[derive(Clone, Debug, Default)]
pub struct Arrival {
    /// The operation called: a gRPC method, or `FHIR <interaction> <type>`.
    pub operation: String,
    /// The caller's address.
    pub peer: Option<SocketAddr>,
    /// The `authorization` header.
    pub authorization: Option<String>,
    /// The `x-request-id` header (kept to 128 characters).
    pub request_id: Option<String>,
    /// The purpose-of-use header (kept to [`MAX_PURPOSE_CHARS`]); [`DEFAULT_PURPOSE`] when
    /// absent.
    pub purpose: Option<String>,
}

/// Why a call was not let in.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Its token was missing or not valid: the refusal is recorded in the audit log.
    #[error("{0}")]
    Unauthenticated(String),
    /// The refusal could not be recorded, so the service answers that it is unavailable.
    #[error("the audit log is unavailable")]
    AuditUnavailable,
    /// The caller made more calls than its limit allows; the message says what the limit is
    /// and when to retry.
    #[error("{0}")]
    Busy(String),
    /// Too many failed sign-ins came from the caller's address.
    #[error(
        "too many failed sign-ins from your address; wait a few seconds and sign in with a valid token"
    )]
    Limited,
}

impl Guard {
    /// Authenticates the call `arrival` describes and counts it against its caller's rate: its
    /// caller, or a refusal recorded in the audit log (every transport's authentication goes
    /// through here, so a refused FHIR call is recorded exactly as a refused gRPC call).
    pub async fn admit(&self, arrival: Arrival) -> Result<Arc<Caller>, Refused> {
        let caller = self.authenticate(arrival).await?;
        self.count_call(&caller).await?;
        Ok(caller)
    }

    /// Counts one more call of an admitted `caller` against its rate (a door that makes several
    /// service calls for one request, as a web page does, counts each). Past the rate the
    /// refusal is recorded once per caller per window, as the limiting of an address is: a
    /// caller over its rate must not add a durable write per call.
    pub async fn count_call(&self, caller: &Caller) -> Result<(), Refused> {
        let key = caller.limit_key();
        let Err(refusal) = self.limits.admit_call(key) else {
            return Ok(());
        };
        if self.limits.first_refusal_in_window(key) {
            let record = Record {
                reason: Some(format!(
                    "{refusal}; further refusals of this caller in the next {} s are not recorded one by one",
                    crate::auth::limits::LIMIT_RECORD_WINDOW.as_secs()
                )),
                ..caller.record(audit::Outcome::Denied)
            };
            if let Err(e) = self.auditor.record(&record).await {
                tracing::error!(error = %e, "cannot record the limiting of a caller");
                return Err(Refused::AuditUnavailable);
            }
        }
        Err(Refused::Busy(refusal))
    }

    /// Authenticates the call `arrival` describes, without counting it against any rate: its
    /// caller, or a refusal recorded in the audit log. [`Guard::admit`] is this and
    /// [`Guard::count_call`]; every door admits.
    async fn authenticate(&self, arrival: Arrival) -> Result<Arc<Caller>, Refused> {
        let request_id = arrival.request_id.map(|id| truncate(&id, 128));
        let purpose = arrival
            .purpose
            .map(|p| truncate(&p, MAX_PURPOSE_CHARS))
            .unwrap_or_else(|| DEFAULT_PURPOSE.to_owned());
        match self
            .authenticator
            .authenticate_until(arrival.authorization.as_deref())
            .await
        {
            Ok((principal, valid_until)) => Ok(Arc::new(Caller {
                principal,
                operation: arrival.operation,
                peer: arrival.peer,
                request_id,
                purpose,
                valid_until: Some(valid_until),
                limits: Some(self.limits.clone()),
            })),
            Err(refused) => {
                if let Some(address) = arrival.peer.map(|p| p.ip())
                    && self.failures.0.admits(&address).is_err()
                {
                    metrics::counter!("naast_auth_failures_total", "outcome" => "limited")
                        .increment(1);
                    if self.failures.0.first_refusal_in_window(&address) {
                        let record = Record {
                            reason: Some(format!(
                                "failed sign-ins from this address limited to {FAILURE_BURST} at once and {FAILURES_PER_SECOND}/s; further ones in the next {} s are refused without a record each (this one: {refused})",
                                FAILURE_WINDOW.as_secs()
                            )),
                            purpose,
                            network_access_point: arrival.peer.map(|p| p.to_string()),
                            request_id,
                            ..Record::new(arrival.operation, audit::Outcome::Denied)
                        };
                        if let Err(e) = self.auditor.record(&record).await {
                            tracing::error!(error = %e, "cannot record the limiting of an address");
                            return Err(Refused::AuditUnavailable);
                        }
                    }
                    return Err(Refused::Limited);
                }
                metrics::counter!("naast_auth_failures_total", "outcome" => "refused").increment(1);
                let record = Record {
                    reason: Some(format!("not authenticated: {refused}")),
                    purpose,
                    network_access_point: arrival.peer.map(|p| p.to_string()),
                    request_id,
                    ..Record::new(arrival.operation, audit::Outcome::Denied)
                };
                match self.auditor.record(&record).await {
                    Ok(()) => Err(Refused::Unauthenticated(refused.to_string())),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot record a refused call");
                        Err(Refused::AuditUnavailable)
                    }
                }
            }
        }
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}
