//! The authentication layer in front of every service: it turns the bearer token into a
//! [`Caller`] in the request's extensions, or answers `UNAUTHENTICATED` and records the refusal
//! in the audit log. Health checks pass without a token.

pub use naast_app::auth::caller::{
    Arrival, Caller, Calling, DEFAULT_PURPOSE, Guard, MAX_PURPOSE_CHARS, PURPOSE_HEADER, Refused,
};
use std::task::{Context, Poll};
use tonic::codegen::{BoxFuture, Service, http};

/// Calls to these paths need no token.
const OPEN_PATHS: &[&str] = &["/grpc.health.v1.Health/"];

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
            let arrival = Arrival {
                peer: request
                    .extensions()
                    .get::<tonic::transport::server::TcpConnectInfo>()
                    .and_then(|info| info.remote_addr()),
                request_id: header_text("x-request-id"),
                purpose: header_text(PURPOSE_HEADER),
                authorization: header_text("authorization"),
                operation,
            };
            match guard.admit(arrival).await {
                Ok(caller) => {
                    request.extensions_mut().insert(Calling::Caller(caller));
                    inner.call(request).await
                }
                Err(Refused::Unauthenticated(reason)) => Ok(tonic::Status::unauthenticated(
                    crate::grpc::status::bounded(reason),
                )
                .into_http()),
                Err(refused @ (Refused::Limited | Refused::Busy(_))) => {
                    Ok(tonic::Status::resource_exhausted(refused.to_string()).into_http())
                }
                Err(Refused::AuditUnavailable) => {
                    Ok(tonic::Status::unavailable("the audit log is unavailable").into_http())
                }
            }
        })
    }
}
