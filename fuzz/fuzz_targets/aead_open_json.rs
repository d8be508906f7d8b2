//! `aead_open_json`: what lies behind RSA. AES-128-GCM with Meta's 16-byte IV
//! (`crypto::aead`) under a fixed key (the pywa vector's AES key), and the decrypted JSON
//! through the request parser and translator. The fuzzer controls either the ciphertext
//! or, since it cannot forge a tag, the plaintext, which the target seals itself so that
//! the JSON layer gets mutated plaintext.
//!
//! Input: `mode ‖ iv (16 bytes) ‖ …`, by `mode % 4`:
//! - 0: the rest is ciphertext ‖ tag, opened as is;
//! - 1: the rest is plaintext: sealed, opened again (must round-trip), parsed;
//! - 2: `position (u16) ‖ xor (1 byte) ‖ plaintext`: sealed, then one byte changed (or,
//!   with `xor` 0, cut at `position`); opening must fail;
//! - 3: the rest is plaintext, sealed into a whole encrypted request body whose AES key is
//!   wrapped for `tests/data/keys/pkcs8.pem`, and opened by `Envelope::open`.

#![no_main]

use std::sync::{Arc, LazyLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use flowgate_fuzz::{Reader, pywa_aes_key, request_path, test_key, wrap_for_test_key};
use flowgate_gateway::crypto::aead::{self, AeadError};
use flowgate_gateway::envelope::{Envelope, Meta, Sealer};
use http::{HeaderMap, StatusCode};
use libfuzzer_sys::fuzz_target;

static AES_KEY: LazyLock<Vec<u8>> = LazyLock::new(pywa_aes_key);
static KEY: LazyLock<aead::Key> =
    LazyLock::new(|| aead::Key::new(&AES_KEY).expect("the pywa key is AES-128"));
static WRAPPED_KEY: LazyLock<String> =
    LazyLock::new(|| STANDARD.encode(wrap_for_test_key(&AES_KEY)));
static ENVELOPE: LazyLock<Envelope> =
    LazyLock::new(|| Envelope::Meta(Arc::new(Meta::new(vec![test_key()], None))));

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    let mode = input.byte() % 4;
    let iv: aead::Nonce = input.array();
    match mode {
        0 => {
            let sealed = input.rest();
            match KEY.open(&iv, &[], sealed) {
                Ok(plaintext) => {
                    assert_eq!(plaintext.len() + aead::TAG_LEN, sealed.len());
                    request_path(&plaintext);
                }
                Err(e) => assert_eq!(
                    e,
                    if sealed.len() < aead::TAG_LEN {
                        AeadError::TooShort
                    } else {
                        AeadError::TagMismatch
                    }
                ),
            }
        }
        1 => {
            let plaintext = input.rest();
            let sealed = KEY.seal(&iv, &[], plaintext).expect("seals");
            assert_eq!(sealed.len(), plaintext.len() + aead::TAG_LEN);
            assert_eq!(KEY.open(&iv, &[], &sealed).expect("opens"), plaintext);
            request_path(plaintext);
        }
        2 => {
            let position = input.u16() as usize;
            let xor = input.byte();
            let mut sealed = KEY.seal(&iv, &[], input.rest()).expect("seals");
            if xor == 0 {
                sealed.truncate(position % sealed.len());
            } else {
                let at = position % sealed.len();
                sealed[at] ^= xor;
            }
            assert!(
                KEY.open(&iv, &[], &sealed).is_err(),
                "a changed ciphertext opened"
            );
        }
        _ => {
            let plaintext = input.rest();
            let sealed = KEY.seal(&iv, &[], plaintext).expect("seals");
            let body = serde_json::json!({
                "encrypted_flow_data": STANDARD.encode(sealed),
                "encrypted_aes_key": *WRAPPED_KEY,
                "initial_vector": STANDARD.encode(iv),
            });
            let body = Bytes::from(serde_json::to_vec(&body).expect("serialises"));
            let opened = ENVELOPE
                .open(&HeaderMap::new(), body)
                .expect("a sealed body opens");
            assert_eq!(&opened.payload[..], plaintext);
            let Sealer::Meta { iv: flipped, .. } = &opened.sealer else {
                panic!("a Meta route answers sealed");
            };
            assert_eq!(*flipped, iv.map(|b| !b));
            request_path(&opened.payload);
            let answer = serde_json::json!({"data": {"status": "active"}});
            assert_eq!(
                opened.sealer.seal(StatusCode::OK, &answer).status(),
                StatusCode::OK
            );
        }
    }
});
