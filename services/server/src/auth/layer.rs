//! The authentication layer in front of every service: it turns the bearer token into a
//! [`Caller`] in the request's extensions, or answers `UNAUTHENTICATED` and records the refusal
//! in the audit log. Health checks pass without a token.

use super::Authenticator;
use crate::audit::{self, Auditor, Record};
use naast_domain::access::{self, Access, Action, Denied, Principal};
use naast_domain::{Command, Household};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codegen::{BoxFuture, Service, http};

/// Calls to these paths need no token.
const OPEN_PATHS: &[&str] = &["/grpc.health.v1.Health/"];
/// The header naming the purpose of use (NEN 7513), e.g. `care`, `research`.
pub const PURPOSE_HEADER: &str = "naast-purpose";
/// Purpose recorded when the caller names none.
pub const DEFAULT_PURPOSE: &str = "care";
/// Longest purpose recorded.
const MAX_PURPOSE_CHARS: usize = 64;

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
    /// The gRPC method.
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
    /// answers a refusal with `PERMISSION_DENIED`. A call that concerns a `household` (names its
    /// stream or its id) is recorded as about it, so the family's access log lists it, allowed
    /// or refused (NEN 7513: every access that concerns a client, by whatever service).
    pub async fn admin_operation(
        &self,
        auditor: &Auditor,
        household: Option<naast_domain::ids::HouseholdId>,
        objects: Vec<String>,
        refusal: Option<&str>,
    ) -> Result<(), tonic::Status> {
        let mut record = self.record(match refusal {
            Some(_) => audit::Outcome::Denied,
            None => audit::Outcome::Allowed,
        });
        record.household = household;
        record.objects = objects;
        match refusal {
            Some(reason) => record.reason = Some(reason.to_owned()),
            None => record.basis = vec!["role:admin".to_owned()],
        }
        auditor.record(&record).await.map_err(|e| {
            tracing::error!(error = %e, "audit log failure: access refused");
            tonic::Status::unavailable("the audit log is unavailable, so no access can be given")
        })?;
        match refusal {
            Some(reason) => Err(tonic::Status::permission_denied(reason)),
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
}

/// See the module documentation.
#[derive(Clone)]
pub struct AuthLayer {
    guard: Option<Guard>,
}

impl AuthLayer {
    /// Guards every call with `guard`; `None` lets every call through unguarded.
    pub fn new(guard: Option<Guard>) -> Self {
        Self { guard }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    guard: Option<Guard>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The ready service answers this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(guard) = self.guard.clone() else {
            request.extensions_mut().insert(Calling::Unguarded);
            return Box::pin(inner.call(request));
        };
        let operation = request.uri().path().to_owned();
        if OPEN_PATHS.iter().any(|p| operation.starts_with(p)) {
            return Box::pin(inner.call(request));
        }
        Box::pin(async move {
            let headers = request.headers();
            let header_text = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let peer = request
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|info| info.remote_addr());
            let request_id = header_text("x-request-id").map(|id| truncate(&id, 128));
            let purpose = header_text(PURPOSE_HEADER)
                .map(|p| truncate(&p, MAX_PURPOSE_CHARS))
                .unwrap_or_else(|| DEFAULT_PURPOSE.to_owned());
            let authorization = header_text("authorization");
            match guard
                .authenticator
                .authenticate_until(authorization.as_deref())
                .await
            {
                Ok((principal, valid_until)) => {
                    request
                        .extensions_mut()
                        .insert(Calling::Caller(Arc::new(Caller {
                            principal,
                            operation,
                            peer,
                            request_id,
                            purpose,
                            valid_until: Some(valid_until),
                        })));
                    inner.call(request).await
                }
                Err(refused) => {
                    let record = Record {
                        reason: Some(format!("not authenticated: {refused}")),
                        purpose,
                        network_access_point: peer.map(|p| p.to_string()),
                        request_id,
                        ..Record::new(operation, audit::Outcome::Denied)
                    };
                    let status = match guard.auditor.record(&record).await {
                        Ok(()) => tonic::Status::unauthenticated(crate::grpc::status::bounded(
                            refused.to_string(),
                        )),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot record a refused call");
                            tonic::Status::unavailable("the audit log is unavailable")
                        }
                    };
                    Ok(status.into_http())
                }
            }
        })
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}
