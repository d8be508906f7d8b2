//! The preview page's static files (`index.html` at `/`, files at `/assets/…`),
//! nested at `/preview`. Nothing yet: the JSON API under `/preview/api/` works alone.

/// The router of the page's files, to be nested at `/preview`.
pub fn assets() -> axum::Router {
    axum::Router::new()
}
