//! Media decryption against the public vector (`tests/data/whatsapp-flows-pywa.json`),
//! and each check failing on its own.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flowgate_sdk::media::{self, EncryptionMetadata, Media, MediaError};
use serde_json::{Value, json};

fn vector() -> (Vec<u8>, EncryptionMetadata, Value) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/whatsapp-flows-pywa.json"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let file = STANDARD
        .decode(v["media"]["cdn_file_base64"].as_str().unwrap())
        .unwrap();
    let metadata = Media::from_value(&json!({
        "media_id": "123",
        "cdn_url": "https://cdn.example/file",
        "file_name": "photo.jpg",
        "encryption_metadata": v["media"]["encryption_metadata"],
    }))
    .unwrap()
    .encryption_metadata;
    (file, metadata, v["media"].clone())
}

#[test]
fn decrypts_the_public_vector() {
    let (file, metadata, expected) = vector();
    let plaintext = media::decrypt(&file, &metadata).unwrap();
    assert_eq!(
        plaintext.len() as u64,
        expected["plaintext_length"].as_u64().unwrap()
    );
    assert_eq!(
        hex::encode(&plaintext[..16]),
        expected["plaintext_first_bytes_hex"].as_str().unwrap()
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &plaintext);
    assert_eq!(
        STANDARD.encode(digest),
        expected["plaintext_sha256_base64"].as_str().unwrap()
    );
    // Keys never show in Debug output.
    assert!(!format!("{metadata:?}").contains(&metadata.encryption_key));
}

#[test]
fn each_check_fails_on_its_own() {
    let (file, metadata, _) = vector();
    let sha = |bytes: &[u8]| {
        STANDARD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
    };

    // A damaged download.
    let mut damaged = file.clone();
    damaged[0] ^= 1;
    assert_eq!(
        media::decrypt(&damaged, &metadata),
        Err(MediaError::EncryptedHashMismatch)
    );

    // A file altered consistently with its hash, but not its HMAC.
    let altered = EncryptionMetadata {
        encrypted_hash: sha(&damaged),
        ..metadata.clone()
    };
    assert_eq!(
        media::decrypt(&damaged, &altered),
        Err(MediaError::HmacMismatch)
    );

    // The wrong HMAC key.
    let wrong_hmac = EncryptionMetadata {
        hmac_key: STANDARD.encode([7u8; 32]),
        ..metadata.clone()
    };
    assert_eq!(
        media::decrypt(&file, &wrong_hmac),
        Err(MediaError::HmacMismatch)
    );

    // The wrong encryption key: padding fails, or the plaintext hash does.
    let wrong_key = EncryptionMetadata {
        encryption_key: STANDARD.encode([7u8; 32]),
        ..metadata.clone()
    };
    let err = media::decrypt(&file, &wrong_key).unwrap_err();
    assert!(
        matches!(
            err,
            MediaError::Decryption | MediaError::PlaintextHashMismatch
        ),
        "{err:?}"
    );

    // The right file, a wrong plaintext hash.
    let wrong_hash = EncryptionMetadata {
        plaintext_hash: sha(b"something else"),
        ..metadata.clone()
    };
    assert_eq!(
        media::decrypt(&file, &wrong_hash),
        Err(MediaError::PlaintextHashMismatch)
    );

    // Too short to hold anything.
    let short = &file[..10];
    let short_meta = EncryptionMetadata {
        encrypted_hash: sha(short),
        ..metadata.clone()
    };
    assert_eq!(
        media::decrypt(short, &short_meta),
        Err(MediaError::TooShort)
    );

    // Malformed metadata.
    for (bad, name) in [
        (
            EncryptionMetadata {
                iv: "AAAA".into(),
                ..metadata.clone()
            },
            "iv",
        ),
        (
            EncryptionMetadata {
                encryption_key: "!!".into(),
                ..metadata.clone()
            },
            "encryption_key",
        ),
    ] {
        let err = media::decrypt(&file, &bad).unwrap_err();
        assert!(
            matches!(&err, MediaError::InvalidMetadata(m) if m.contains(name)),
            "{err:?}"
        );
    }
    assert!(Media::from_value(&json!({"media_id": "1"})).is_err());
}
