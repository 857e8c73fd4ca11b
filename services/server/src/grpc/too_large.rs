//! gRPC says a message over the receiver's size limit is `RESOURCE_EXHAUSTED`; tonic 0.14 answers
//! `OUT_OF_RANGE`. This layer corrects the code of exactly that answer, for every service.

use std::task::{Context, Poll};
use tonic::codegen::{BoxFuture, Service, http};

/// Start of the message tonic gives a request over `max_decoding_message_size`, as it stands
/// in the `grpc-message` header (percent-encoded).
const TOO_LARGE: &str = "Error,%20decoded%20message%20length%20too%20large";
const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

/// Wraps a service so that oversized requests are refused with `RESOURCE_EXHAUSTED`.
#[derive(Clone, Debug, Default)]
pub struct TooLargeLayer;

impl<S> tower::Layer<S> for TooLargeLayer {
    type Service = TooLarge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TooLarge(inner)
    }
}

/// See [`TooLargeLayer`].
#[derive(Clone, Debug)]
pub struct TooLarge<S>(S);

impl<S, Req, Body> Service<Req> for TooLarge<S>
where
    S: Service<Req, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let response = self.0.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            let headers = response.headers_mut();
            // An error before any message is a trailers-only response: the status is a header.
            let too_large = headers
                .get("grpc-status")
                .is_some_and(|s| s == OUT_OF_RANGE)
                && headers
                    .get("grpc-message")
                    .and_then(|m| m.to_str().ok())
                    .is_some_and(|m| m.starts_with(TOO_LARGE));
            if too_large {
                headers.insert(
                    "grpc-status",
                    http::HeaderValue::from_static(RESOURCE_EXHAUSTED),
                );
            }
            Ok(response)
        })
    }
}
