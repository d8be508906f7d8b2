//! `media_decrypt`: the SDK's decryption of PhotoPicker / DocumentPicker files
//! (`flowgate_sdk::media`): metadata parsing, the two hashes, the truncated HMAC and
//! AES-256-CBC. Since the fuzzer cannot make the hashes and the HMAC match, some modes
//! have the target encrypt a file as WhatsApp does from fuzzer-chosen keys and plaintext.
//!
//! Input: `mode ‖ …`, by `mode % 3`:
//! - 0: `media JSON (2-byte length) ‖ CDN file`: the JSON is read both as a `data` media
//!   object and as bare `encryption_metadata`;
//! - 1: `encryption key (32) ‖ HMAC key (32) ‖ IV (16) ‖ plaintext`: encrypted by the target,
//!   then decrypted (must give the plaintext back);
//! - 2: like 1 with `position (u16) ‖ xor (1 byte)` before the plaintext: one byte of the
//!   file changed (or, with `xor` 0, the file cut at `position`) and `encrypted_hash`
//!   recomputed over it; decryption must fail.

#![no_main]

use aws_lc_rs::cipher::{AES_256, EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flowgate_fuzz::Reader;
use flowgate_sdk::media::{EncryptionMetadata, Media, MediaError, decrypt};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// A CDN file as WhatsApp makes it, with its metadata.
fn encrypt(
    key: [u8; 32],
    hmac_key: [u8; 32],
    iv: [u8; 16],
    plaintext: &[u8],
) -> (Vec<u8>, EncryptionMetadata) {
    let cipher = PaddedBlockEncryptingKey::cbc_pkcs7(
        UnboundCipherKey::new(&AES_256, &key).expect("a 32-byte key"),
    )
    .expect("CBC");
    let mut file = plaintext.to_vec();
    cipher
        .less_safe_encrypt(&mut file, EncryptionContext::Iv128(FixedLength::from(iv)))
        .expect("encrypts");
    let mut signed = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, &hmac_key));
    signed.update(&iv);
    signed.update(&file);
    file.extend_from_slice(&signed.sign().as_ref()[..10]);
    let metadata = EncryptionMetadata {
        encryption_key: STANDARD.encode(key),
        hmac_key: STANDARD.encode(hmac_key),
        iv: STANDARD.encode(iv),
        plaintext_hash: STANDARD.encode(digest(&SHA256, plaintext)),
        encrypted_hash: STANDARD.encode(digest(&SHA256, &file)),
    };
    (file, metadata)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    match input.byte() % 3 {
        0 => {
            let metadata = input.long();
            let file = input.rest();
            let Ok(value) = serde_json::from_slice::<Value>(metadata) else {
                return;
            };
            if let Ok(media) = Media::from_value(&value) {
                let _ = format!("{media:?}");
                let _ = decrypt(file, &media.encryption_metadata);
            }
            if let Ok(metadata) = serde_json::from_value::<EncryptionMetadata>(value) {
                if let Ok(plaintext) = decrypt(file, &metadata) {
                    // Only a file that matches both hashes decrypts.
                    let hash = |b64: &str| STANDARD.decode(b64).expect("checked by decrypt");
                    assert_eq!(
                        hash(&metadata.encrypted_hash),
                        digest(&SHA256, file).as_ref()
                    );
                    assert_eq!(
                        hash(&metadata.plaintext_hash),
                        digest(&SHA256, &plaintext).as_ref()
                    );
                }
            }
        }
        mode => {
            let (key, hmac_key, iv) = (input.array(), input.array(), input.array());
            let tamper = (mode == 2).then(|| (usize::from(input.u16()), input.byte()));
            let plaintext = input.rest();
            let (mut file, mut metadata) = encrypt(key, hmac_key, iv, plaintext);
            let Some((position, xor)) = tamper else {
                assert_eq!(decrypt(&file, &metadata).as_deref(), Ok(plaintext));
                return;
            };
            if xor == 0 {
                file.truncate(position % file.len());
            } else {
                let at = position % file.len();
                file[at] ^= xor;
            }
            metadata.encrypted_hash = STANDARD.encode(digest(&SHA256, &file));
            let err = decrypt(&file, &metadata).expect_err("a changed file decrypted");
            assert!(
                matches!(err, MediaError::HmacMismatch | MediaError::TooShort),
                "{err:?}"
            );
        }
    }
});
