//! Decrypting media that a user picked with a PhotoPicker or DocumentPicker.
//!
//! WhatsApp puts each file in `data` as `{media_id, cdn_url, file_name,
//! encryption_metadata{encryption_key, hmac_key, iv, plaintext_hash, encrypted_hash}}`.
//! The business downloads `cdn_url` itself and hands the bytes to [`decrypt`], which
//! checks, in order: SHA-256(file) = `encrypted_hash`; HMAC-SHA256(`hmac_key`,
//! iv ‖ ciphertext), first 10 bytes = the file's last 10 bytes; AES-256-CBC with
//! PKCS#7 padding; SHA-256(plaintext) = `plaintext_hash`. Each failed check is its
//! own error. All cryptography is aws-lc-rs's.

use aws_lc_rs::cipher::{AES_256, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// The length of the truncated HMAC at the end of a CDN file.
const MAC_LEN: usize = 10;

/// A picked file, as it appears in a screen's `data`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Media {
    pub media_id: String,
    pub cdn_url: String,
    #[serde(default)]
    pub file_name: Option<String>,
    pub encryption_metadata: EncryptionMetadata,
}

impl Media {
    /// Reads a media object from a `data` value.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, MediaError> {
        Media::deserialize(value).map_err(|e| MediaError::InvalidMetadata(e.to_string()))
    }
}

/// The keys and hashes of one encrypted file, base64 as WhatsApp sends them.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct EncryptionMetadata {
    pub encryption_key: String,
    pub hmac_key: String,
    pub iv: String,
    pub plaintext_hash: String,
    pub encrypted_hash: String,
}

impl std::fmt::Debug for EncryptionMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs; hashes identify the file.
        f.debug_struct("EncryptionMetadata")
            .field("plaintext_hash", &self.plaintext_hash)
            .field("encrypted_hash", &self.encrypted_hash)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("invalid encryption metadata: {0}")]
    InvalidMetadata(String),
    #[error("the downloaded file does not match encrypted_hash (incomplete or wrong download)")]
    EncryptedHashMismatch,
    #[error("the file is too short to hold a ciphertext and its HMAC")]
    TooShort,
    #[error("HMAC check failed: the file was altered or the hmac_key is wrong")]
    HmacMismatch,
    #[error("AES-256-CBC decryption failed: wrong encryption_key or iv, or bad padding")]
    Decryption,
    #[error("the decrypted file does not match plaintext_hash")]
    PlaintextHashMismatch,
}

fn field<const N: usize>(name: &str, value: &str) -> Result<[u8; N], MediaError> {
    let bytes = STANDARD
        .decode(value)
        .map_err(|_| MediaError::InvalidMetadata(format!("{name} is not base64")))?;
    bytes
        .try_into()
        .map_err(|_| MediaError::InvalidMetadata(format!("{name} is not {N} bytes")))
}

/// Checks and decrypts a file downloaded from `cdn_url`.
pub fn decrypt(cdn_file: &[u8], metadata: &EncryptionMetadata) -> Result<Vec<u8>, MediaError> {
    let encryption_key: [u8; 32] = field("encryption_key", &metadata.encryption_key)?;
    let hmac_key: [u8; 32] = field("hmac_key", &metadata.hmac_key)?;
    let iv: [u8; 16] = field("iv", &metadata.iv)?;
    let plaintext_hash: [u8; 32] = field("plaintext_hash", &metadata.plaintext_hash)?;
    let encrypted_hash: [u8; 32] = field("encrypted_hash", &metadata.encrypted_hash)?;

    verify_slices_are_equal(digest(&SHA256, cdn_file).as_ref(), &encrypted_hash)
        .map_err(|_| MediaError::EncryptedHashMismatch)?;
    let split = cdn_file
        .len()
        .checked_sub(MAC_LEN)
        .filter(|&n| n > 0)
        .ok_or(MediaError::TooShort)?;
    let (ciphertext, mac) = cdn_file.split_at(split);

    let mut signed = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, &hmac_key));
    signed.update(&iv);
    signed.update(ciphertext);
    verify_slices_are_equal(&signed.sign().as_ref()[..MAC_LEN], mac)
        .map_err(|_| MediaError::HmacMismatch)?;

    let key =
        UnboundCipherKey::new(&AES_256, &encryption_key).map_err(|_| MediaError::Decryption)?;
    let key = PaddedBlockDecryptingKey::cbc_pkcs7(key).map_err(|_| MediaError::Decryption)?;
    let mut buffer = ciphertext.to_vec();
    let plaintext = key
        .decrypt(&mut buffer, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| MediaError::Decryption)?
        .to_vec();

    verify_slices_are_equal(digest(&SHA256, &plaintext).as_ref(), &plaintext_hash)
        .map_err(|_| MediaError::PlaintextHashMismatch)?;
    Ok(plaintext)
}
