//! `envelope_open`: Meta's envelope opener (`Envelope::open`) on an arbitrary body and
//! `X-Hub-Signature-256` header, with the keys of the public test data (the pywa vector's
//! key and `tests/data/keys/pkcs8.pem`) and the pywa app secret. What opens goes on
//! through the request parser and translator, and its answer is sealed.
//!
//! Input: `mode ‖ …`, by `mode % 4`:
//! - 0: no signature header; the body is the rest (must be refused with 432);
//! - 1: the header is the body's correct signature, so the body reaches decryption;
//! - 2: the header is a one-byte-length-prefixed field, the body the rest;
//! - 3: the body is the rest, opened by a route without an app secret.

#![no_main]

use std::sync::{Arc, LazyLock};

use aws_lc_rs::hmac;
use bytes::Bytes;
use flowgate_fuzz::{Reader, pywa_app_secret, pywa_key, request_path, test_key};
use flowgate_gateway::crypto::signature::AppSecrets;
use flowgate_gateway::envelope::{Envelope, Meta, SIGNATURE_HEADER};
use http::{HeaderMap, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;

static SIGNED: LazyLock<Envelope> = LazyLock::new(|| {
    let secrets = AppSecrets::new(&[pywa_app_secret(), "another-app-secret"]);
    Envelope::Meta(Arc::new(Meta::new(
        vec![test_key(), pywa_key()],
        Some(secrets),
    )))
});

static UNSIGNED: LazyLock<Envelope> =
    LazyLock::new(|| Envelope::Meta(Arc::new(Meta::new(vec![test_key(), pywa_key()], None))));

fn signature(body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, pywa_app_secret().as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, body)))
}

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    let mode = input.byte() % 4;
    let mut headers = HeaderMap::new();
    let (envelope, body) = match mode {
        0 => (&*SIGNED, input.rest()),
        1 => {
            let body = input.rest();
            let value = HeaderValue::from_str(&signature(body)).expect("hex is a header value");
            headers.insert(SIGNATURE_HEADER, value);
            (&*SIGNED, body)
        }
        2 => {
            let header = input.short();
            if let Ok(value) = HeaderValue::from_bytes(header) {
                headers.insert(SIGNATURE_HEADER, value);
            }
            (&*SIGNED, input.rest())
        }
        _ => (&*UNSIGNED, input.rest()),
    };

    // Plain mode hands the body over untouched.
    let plain = Envelope::Plain
        .open(&headers, Bytes::copy_from_slice(body))
        .expect("plain mode opens anything");
    assert_eq!(&plain.payload[..], body);

    match envelope.open(&headers, Bytes::copy_from_slice(body)) {
        Ok(opened) => {
            assert_ne!(mode, 0, "opened without a signature");
            assert_eq!(opened.signature_verified, mode != 3);
            request_path(&opened.payload);
            let answer = serde_json::json!({"screen": "NEXT", "data": {"ok": true}});
            let response = opened.sealer.seal(StatusCode::OK, &answer);
            assert_eq!(response.status(), StatusCode::OK);
        }
        Err(e) => {
            let status = e.status().as_u16();
            match mode {
                0 => assert_eq!(status, 432, "{e:?}"),
                1 | 3 => assert_eq!(status, 421, "{e:?}"),
                _ => assert!(status == 421 || status == 432, "{e:?}"),
            }
        }
    }
});
