//! Request ids in the `x-request-id` header. tower-http's `SetRequestIdLayer` (a new
//! UUID where none is given) and `PropagateRequestIdLayer` (the id echoed on the
//! answer) do the work; this module adds our one rule in front of them: a caller's id
//! is kept only when it is short and plain, since it reaches the logs, the span and the
//! flow service. Anything else is dropped, so a fresh UUID replaces it.

use axum::http::{HeaderName, Request};
use tower_http::request_id::RequestId;

/// The header that carries the request id, in and out.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Whether a caller's request id may be used as it is: 1 to 128 characters of
/// letters, digits and `-_.:`.
pub fn is_plain(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Removes an `x-request-id` whose value is not [plain](is_plain), for `map_request`.
/// As before any layer existed, the first value is the one that counts.
pub fn keep_only_plain<B>(mut request: Request<B>) -> Request<B> {
    let plain = request
        .headers()
        .get(&X_REQUEST_ID)
        .is_none_or(|value| is_plain(value.as_bytes()));
    if !plain {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    request
}

/// The request id `SetRequestIdLayer` left on a request ("" if it is missing, which
/// the stack never allows).
pub fn of<B>(request: &Request<B>) -> &str {
    request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_kept() {
        let with = |values: &[&'static str]| {
            let mut request = Request::new(());
            for value in values {
                request
                    .headers_mut()
                    .append(X_REQUEST_ID, value.parse().unwrap());
            }
            keep_only_plain(request)
                .headers()
                .get_all(X_REQUEST_ID)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(with(&["abc-123"]), ["abc-123"]);
        assert_eq!(with(&["a.b:c_d"]), ["a.b:c_d"]);
        assert!(with(&[]).is_empty());
        assert!(with(&["has space"]).is_empty());
        assert!(with(&["bad id", "b"]).is_empty());
        assert!(with(&[Box::leak("x".repeat(129).into_boxed_str())]).is_empty());
        assert_eq!(
            with(&[Box::leak("x".repeat(128).into_boxed_str())]).len(),
            1
        );
    }
}
