//! Every gRPC call counted by method and status code, and timed until its answer's headers (for
//! a stream: until it opened): `naast_rpc_requests_total`, `naast_rpc_duration_seconds`. Every
//! call also has a request id: the client's `x-request-id` (up to 128 visible ASCII characters),
//! or one made here (a UUID v7). It goes on to the audit record (the authentication layer reads
//! the header), into the `rpc` span every log line of the call carries, and back to the client
//! in the answer's `x-request-id` header.

use naast_app::auth::caller::{REQUEST_ID_HEADER, request_id};
use std::task::{Context, Poll};
use tonic::codegen::{BoxFuture, Service, http};
use tracing::Instrument as _;

/// Counts and times every call of the services it wraps.
#[derive(Clone, Debug, Default)]
pub struct ObserveLayer;

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe(inner)
    }
}

/// See [`ObserveLayer`].
#[derive(Clone, Debug)]
pub struct Observe<S>(S);

impl<S, Body, ResBody> Service<http::Request<Body>> for Observe<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let started = std::time::Instant::now();
        let request_id = request_id(
            request
                .headers()
                .get(REQUEST_ID_HEADER)
                .map(http::HeaderValue::as_bytes),
        );
        // Visible ASCII (a UUID, or the client's own checked id): always a header value.
        let request_id = http::HeaderValue::from_str(&request_id)
            .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"));
        request
            .headers_mut()
            .insert(REQUEST_ID_HEADER, request_id.clone());
        let span = tracing::info_span!(
            "rpc",
            method = %method,
            request_id = %request_id.to_str().unwrap_or_default()
        );
        let response = {
            let _entered = span.enter();
            self.0.call(request)
        };
        Box::pin(async move {
            let mut response = response.instrument(span).await;
            if let Ok(answer) = &mut response {
                answer.headers_mut().insert(REQUEST_ID_HEADER, request_id);
            }
            let code = match &response {
                // An error before any message is a trailers-only answer: its status is a header.
                // A unary answer with a message carries its status in the trailers, after the
                // message: it was answered, and counts as OK here.
                Ok(answer) => answer
                    .headers()
                    .get("grpc-status")
                    .and_then(|s| s.to_str().ok())
                    .and_then(|s| s.parse::<i32>().ok())
                    .map_or("OK", code_name),
                Err(_) => "TRANSPORT_ERROR",
            };
            // A method no service has (anyone can send any path) is not a label of its own:
            // the number of series must not grow with what strangers send.
            let method = if code == "UNIMPLEMENTED" {
                "unknown".to_owned()
            } else {
                method
            };
            metrics::histogram!("naast_rpc_duration_seconds", "method" => method.clone())
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("naast_rpc_requests_total", "method" => method, "code" => code)
                .increment(1);
            response
        })
    }
}

fn code_name(code: i32) -> &'static str {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
