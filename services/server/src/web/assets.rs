//! The web timeline's own stylesheet and script, compiled into the binary (no third-party
//! assets, nothing fetched from elsewhere).

use axum::http::header;
use axum::response::IntoResponse;

/// `/static/naast.css`.
pub(crate) async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/naast.css"),
    )
}

/// `/static/live.js`: live updates of an open timeline (the only script; the pages work
/// without it).
pub(crate) async fn live_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/live.js"),
    )
}
