//! The flow preview: a page for flow authors on the admin listener, turned on with
//! `FLOWGATE_PREVIEW=on`. It draws a flow's screens from its Flow JSON and runs the
//! flow through a configured route, as WhatsApp would, minus Meta's envelope and
//! signature: which is why it lives only on the admin listener, and why the gateway
//! warns at start when that listener is not on loopback.
//!
//! - `assets`: the page (`/preview/`, `/preview/assets/…`), embedded in the binary.
//! - [`api`]: the JSON API under `/preview/api/` the page calls: the routes and their
//!   flows (`ListFlows`), a flow's Flow JSON (`GetFlow`), a check of a Flow JSON file,
//!   and one exchange through the same code path as the endpoint
//!   ([`crate::routes::respond`]), its answer checked against the Flow JSON.
//!
//! Preview exchanges pass none of the endpoint's layers: they are not counted in
//! `flowgate_requests_total` nor take an in-flight slot; their calls to the flow
//! service are in `flowgate_backend_call_duration_seconds` like any other.

pub mod api;
mod assets;

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;

use crate::routes::AppState;

/// `/preview/…`: the page and its API, for the routes of `state`.
///
/// The page's router is nested at `/preview/` (its `/` is `/preview/`, its
/// `/assets/{file}` is `/preview/assets/{file}`); `/preview` itself redirects there,
/// so that the page's relative links resolve under `/preview/`.
pub fn router(state: &AppState) -> Router {
    api::router(state)
        .route(
            "/preview",
            get(|| async { Redirect::permanent("/preview/") }),
        )
        .nest("/preview/", assets::assets())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt;

    use crate::envelope::Envelope;
    use crate::routes::AppState;
    use crate::upstream::Upstream;

    #[tokio::test]
    async fn the_page_is_under_a_trailing_slash() {
        let upstream = Upstream::new("http://127.0.0.1:9", Duration::from_secs(60)).unwrap();
        let state = AppState::single(
            "/flow-endpoint",
            Envelope::Plain,
            upstream,
            Duration::from_secs(1),
        )
        .with_preview(true);
        let response = crate::routes::admin(&state)
            .oneshot(Request::get("/preview").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(response.headers()[header::LOCATION], "/preview/");
    }
}
