//! The preview page's static files, embedded in the binary: no build step, nothing
//! fetched at run time.
//!
//! [`assets`] serves `index.html` at `/` and each file at `/assets/<name>`, each with
//! its content type, a strong `ETag` (a hash of the embedded bytes, so a new binary
//! means new tags) and `Cache-Control: no-cache`: the browser revalidates every time
//! and gets a `304` while the binary is the same. The page's `Content-Security-Policy`
//! allows only its own scripts and styles and `data:` images (a Flow JSON `Image` is
//! base64), so a Flow JSON or an answer can never load anything from elsewhere.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
#[derive(Debug)]
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("assets/index.html"),
};

/// The files under `/assets/`.
const FILES: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/app.css"),
    },
];

/// Only this origin's scripts and styles; images only as `data:` URLs; no frames, no
/// plugins, no form posts elsewhere. `connect-src 'self'` covers the JSON API.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The router of the page's files, to be nested at `/preview/` (with the slash: the
/// page's links are relative to it).
pub fn assets() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(file))
}

/// `index.html`. Its links are relative (`assets/app.js`, `api/routes`), so it is
/// served from a path ending in `/`: nested at `/preview/`, this is `/preview/`.
async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match FILES.iter().find(|asset| asset.name == name) {
        Some(asset) => serve(asset, &headers),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such preview asset\n",
        )
            .into_response(),
    }
}

/// The strong `ETag` of every embedded file, computed once.
static ETAGS: LazyLock<Vec<(&'static str, HeaderValue)>> = LazyLock::new(|| {
    std::iter::once(&INDEX)
        .chain(FILES)
        .map(|asset| {
            let tag = format!("\"{:016x}\"", fnv1a(asset.body));
            (
                asset.name,
                HeaderValue::from_str(&tag).expect("hex is a valid header"),
            )
        })
        .collect()
});

fn etag(name: &str) -> HeaderValue {
    ETAGS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, tag)| tag.clone())
        .expect("every embedded file has a tag")
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let etag = etag(asset.name);
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|candidate| {
            let candidate = candidate.trim();
            candidate == "*" || candidate.trim_start_matches("W/") == etag.to_str().unwrap_or("")
        });
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let mut response = (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response();
    if asset.name == INDEX.name {
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

/// 64-bit FNV-1a: enough to tell two builds of a file apart, which is all an `ETag`
/// needs; not a security boundary.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new().nest("/preview/", assets())
    }

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn text(response: Response) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn header(response: &Response, name: header::HeaderName) -> &str {
        response.headers()[name].to_str().unwrap()
    }

    #[tokio::test]
    async fn each_file_has_its_content_type_and_cache_headers() {
        for (path, content_type, marker) in [
            ("/preview/", "text/html; charset=utf-8", "<!doctype html>"),
            (
                "/preview/assets/app.js",
                "text/javascript; charset=utf-8",
                "'use strict'",
            ),
            (
                "/preview/assets/app.css",
                "text/css; charset=utf-8",
                ".phone",
            ),
        ] {
            let response = get(path, None).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&response, header::CONTENT_TYPE), content_type);
            assert_eq!(header(&response, header::CACHE_CONTROL), "no-cache");
            assert_eq!(header(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert!(header(&response, header::ETAG).starts_with('"'));
            assert!(text(response).await.contains(marker), "{path}");
        }
    }

    #[tokio::test]
    async fn the_page_allows_only_its_own_scripts_and_data_images() {
        let response = get("/preview/", None).await;
        let csp = header(&response, header::CONTENT_SECURITY_POLICY);
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("img-src data:"), "{csp}");
        let page = text(response).await;
        assert!(
            page.contains(r#"src="assets/app.js""#),
            "relative script link"
        );
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "{page}"
        );
    }

    #[tokio::test]
    async fn a_matching_etag_is_not_modified_and_another_is_served() {
        let tag = header(&get("/preview/assets/app.js", None).await, header::ETAG).to_owned();
        let same = get("/preview/assets/app.js", Some(&tag)).await;
        assert_eq!(same.status(), StatusCode::NOT_MODIFIED);
        assert!(text(same).await.is_empty());
        let other = get("/preview/assets/app.js", Some("\"0\"")).await;
        assert_eq!(other.status(), StatusCode::OK);
        let css = header(&get("/preview/assets/app.css", None).await, header::ETAG).to_owned();
        assert_ne!(tag, css, "each file has its own tag");
    }

    #[tokio::test]
    async fn unknown_files_are_404() {
        for path in [
            "/preview/assets/nope.js",
            "/preview/assets/..%2Fassets.rs",
            "/preview/assets/index.html",
        ] {
            assert_eq!(
                get(path, None).await.status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
    }
}
