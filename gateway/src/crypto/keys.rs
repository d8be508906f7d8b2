//! RSA private keys for Meta's encrypted endpoint: loading PEM (PKCS#1, PKCS#8,
//! or PKCS#8 encrypted with PBES2), generating a key pair, and the OAEP decryption
//! of the request's AES key. All cryptography is aws-lc-rs's.

use std::num::NonZeroU32;

use aws_lc_rs::cipher::{
    AES_128, AES_192, AES_256, DecryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::pbkdf2;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::der::{self, DerError, Reader};

// Object identifiers (DER contents).
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
const OID_PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
const OID_HMAC_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x07];
const OID_HMAC_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09];
const OID_HMAC_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x0a];
const OID_HMAC_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x0b];
const OID_DES_EDE3_CBC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x03, 0x07];
const OID_AES128_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02];
const OID_AES192_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16];
const OID_AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];

/// PBKDF2 iterations for keys this crate encrypts (OWASP's 2023 figure for HMAC-SHA256).
const KEYGEN_ITERATIONS: u32 = 600_000;

/// Why a key could not be loaded. Messages never contain key material or passphrases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no PEM private key found (expected BEGIN PRIVATE KEY, RSA PRIVATE KEY or ENCRYPTED PRIVATE KEY)"
    )]
    NoPem,
    #[error("the PEM block is not valid base64")]
    Base64,
    #[error("the key is encrypted but no passphrase is set (FLOWGATE_PRIVATE_KEY_PASSPHRASE)")]
    PassphraseMissing,
    #[error("the key could not be decrypted: wrong passphrase or damaged file")]
    PassphraseWrong,
    #[error(
        "legacy encrypted PEM (Proc-Type: 4,ENCRYPTED) is not supported; convert it with \
         `openssl pkcs8 -topk8 -v2 aes-256-cbc -in old.pem -out new.pem`"
    )]
    LegacyEncryption,
    #[error("unsupported key encryption: {0}")]
    Unsupported(&'static str),
    #[error("the key is malformed")]
    Malformed,
    #[error("not a usable RSA key (2048 to 8192 bits): {0}")]
    Rejected(String),
}

impl From<DerError> for KeyError {
    fn from(_: DerError) -> Self {
        KeyError::Malformed
    }
}

/// An RSA private key ready for RSA-OAEP (SHA-256, MGF1-SHA-256) decryption.
pub struct PrivateKey {
    oaep: OaepPrivateDecryptingKey,
    bits: usize,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey(RSA-{})", self.bits)
    }
}

impl PrivateKey {
    /// Reads the first private key in a PEM text. `passphrase` is needed for an
    /// `ENCRYPTED PRIVATE KEY` and ignored otherwise.
    pub fn from_pem(pem: &str, passphrase: Option<&[u8]>) -> Result<Self, KeyError> {
        let (label, headers, der) = first_pem_block(pem)?;
        if headers.contains("ENCRYPTED") {
            return Err(KeyError::LegacyEncryption);
        }
        let pkcs8 = match label {
            "PRIVATE KEY" => der,
            "RSA PRIVATE KEY" => pkcs1_to_pkcs8(&der),
            "ENCRYPTED PRIVATE KEY" => {
                decrypt_pkcs8(&der, passphrase.ok_or(KeyError::PassphraseMissing)?)?
            }
            _ => return Err(KeyError::NoPem),
        };
        Self::from_pkcs8(&pkcs8)
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let key =
            PrivateDecryptingKey::from_pkcs8(der).map_err(|e| KeyError::Rejected(e.to_string()))?;
        let bits = key.key_size_bits();
        let oaep = OaepPrivateDecryptingKey::new(key)
            .map_err(|_| KeyError::Rejected("not an OAEP key".into()))?;
        Ok(Self { oaep, bits })
    }

    /// RSA-OAEP-SHA256 decryption; `None` when this key did not encrypt `ciphertext`.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0u8; self.oaep.min_output_size()];
        let plaintext = self
            .oaep
            .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut out, None)
            .ok()?;
        Some(plaintext.to_vec())
    }
}

/// A generated key pair, as PEM texts.
#[derive(Debug)]
pub struct GeneratedKey {
    /// PKCS#8, encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) when a passphrase was given.
    pub private_pem: String,
    /// SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`), the form Meta's upload call takes.
    pub public_pem: String,
}

/// Generates an RSA-2048 key pair, encrypting the private key when `passphrase` is given.
pub fn generate(passphrase: Option<&[u8]>) -> Result<GeneratedKey, KeyError> {
    let key = PrivateDecryptingKey::generate(KeySize::Rsa2048)
        .map_err(|_| KeyError::Rejected("generation failed".into()))?;
    let pkcs8: Pkcs8V1Der = key.as_der().map_err(|_| KeyError::Malformed)?;
    let public: PublicKeyX509Der = key.public_key().as_der().map_err(|_| KeyError::Malformed)?;
    let private_pem = match passphrase {
        None => pem("PRIVATE KEY", pkcs8.as_ref()),
        Some(passphrase) => pem(
            "ENCRYPTED PRIVATE KEY",
            &encrypt_pkcs8(pkcs8.as_ref(), passphrase, KEYGEN_ITERATIONS)?,
        ),
    };
    Ok(GeneratedKey {
        private_pem,
        public_pem: pem("PUBLIC KEY", public.as_ref()),
    })
}

/// Encodes DER as a PEM block with 64-character lines.
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The label, the header lines (legacy encryption), and the decoded body of the first
/// private-key PEM block.
fn first_pem_block(pem: &str) -> Result<(&str, String, Vec<u8>), KeyError> {
    let mut lines = pem.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        if !label.ends_with("PRIVATE KEY") {
            continue;
        }
        let end = format!("-----END {label}-----");
        let mut headers = String::new();
        let mut body = String::new();
        for line in lines.by_ref() {
            if line == end {
                let der = STANDARD
                    .decode(body.as_bytes())
                    .map_err(|_| KeyError::Base64)?;
                return Ok((label, headers, der));
            }
            if line.contains(':') {
                headers.push_str(line);
                headers.push('\n');
            } else {
                body.push_str(line);
            }
        }
        return Err(KeyError::Malformed);
    }
    Err(KeyError::NoPem)
}

/// Wraps a PKCS#1 `RSAPrivateKey` in a PKCS#8 `PrivateKeyInfo`.
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    let algorithm = der::sequence(&[
        &der::tlv(der::OID, OID_RSA_ENCRYPTION),
        &der::tlv(der::NULL, &[]),
    ]);
    der::sequence(&[
        &der::uint(0),
        &algorithm,
        &der::tlv(der::OCTET_STRING, pkcs1),
    ])
}

/// The block cipher of a PBES2 scheme.
#[derive(Clone, Copy)]
enum Cipher {
    Aes(&'static aws_lc_rs::cipher::Algorithm, usize),
    DesEde3,
}

/// Decrypts a PKCS#8 `EncryptedPrivateKeyInfo` protected with PBES2.
fn decrypt_pkcs8(der: &[u8], passphrase: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut info = Reader::new(der).sequence()?;
    let mut algorithm = info.sequence()?;
    if algorithm.read(der::OID)? != OID_PBES2 {
        return Err(KeyError::Unsupported(
            "only PBES2 is supported (use openssl pkcs8 -v2)",
        ));
    }
    let mut params = algorithm.sequence()?;
    let mut kdf = params.sequence()?;
    if kdf.read(der::OID)? != OID_PBKDF2 {
        return Err(KeyError::Unsupported(
            "only PBKDF2 is supported as the key derivation",
        ));
    }
    let mut kdf_params = kdf.sequence()?;
    let salt = kdf_params.read(der::OCTET_STRING)?;
    let iterations = NonZeroU32::new(kdf_params.small_uint()?).ok_or(KeyError::Malformed)?;
    let mut key_length = None;
    if kdf_params.peek_tag() == Some(der::INTEGER) {
        key_length = Some(kdf_params.small_uint()? as usize);
    }
    let prf = if kdf_params.is_empty() {
        pbkdf2::PBKDF2_HMAC_SHA1
    } else {
        match kdf_params.sequence()?.read(der::OID)? {
            OID_HMAC_SHA1 => pbkdf2::PBKDF2_HMAC_SHA1,
            OID_HMAC_SHA256 => pbkdf2::PBKDF2_HMAC_SHA256,
            OID_HMAC_SHA384 => pbkdf2::PBKDF2_HMAC_SHA384,
            OID_HMAC_SHA512 => pbkdf2::PBKDF2_HMAC_SHA512,
            _ => return Err(KeyError::Unsupported("unknown PBKDF2 hash")),
        }
    };
    let mut scheme = params.sequence()?;
    let cipher = match scheme.read(der::OID)? {
        OID_AES128_CBC => Cipher::Aes(&AES_128, 16),
        OID_AES192_CBC => Cipher::Aes(&AES_192, 24),
        OID_AES256_CBC => Cipher::Aes(&AES_256, 32),
        OID_DES_EDE3_CBC => Cipher::DesEde3,
        _ => {
            return Err(KeyError::Unsupported(
                "cipher other than AES-CBC or DES-EDE3-CBC",
            ));
        }
    };
    let iv = scheme.read(der::OCTET_STRING)?;
    let mut ciphertext = info.read(der::OCTET_STRING)?.to_vec();

    let key_len = match cipher {
        Cipher::Aes(_, len) => len,
        Cipher::DesEde3 => 24,
    };
    if key_length.is_some_and(|l| l != key_len) {
        return Err(KeyError::Malformed);
    }
    let mut key = vec![0u8; key_len];
    pbkdf2::derive(prf, iterations, salt, passphrase, &mut key);
    let (algorithm, context) = match cipher {
        Cipher::Aes(algorithm, _) => {
            let iv: [u8; 16] = iv.try_into().map_err(|_| KeyError::Malformed)?;
            (algorithm, DecryptionContext::Iv128(FixedLength::from(iv)))
        }
        Cipher::DesEde3 => {
            let iv: [u8; 8] = iv.try_into().map_err(|_| KeyError::Malformed)?;
            #[allow(deprecated)]
            let algorithm = &aws_lc_rs::cipher::DES_EDE3_FOR_LEGACY_USE_ONLY;
            (algorithm, DecryptionContext::Iv64(FixedLength::from(iv)))
        }
    };
    let unbound = UnboundCipherKey::new(algorithm, &key).map_err(|_| KeyError::Malformed)?;
    let decrypting =
        PaddedBlockDecryptingKey::cbc_pkcs7(unbound).map_err(|_| KeyError::Malformed)?;
    // A wrong passphrase shows as bad padding or as a plaintext that is not a key.
    let plaintext = decrypting
        .decrypt(&mut ciphertext, context)
        .map_err(|_| KeyError::PassphraseWrong)?;
    let plaintext = plaintext.to_vec();
    if Reader::new(&plaintext).sequence().is_err() {
        return Err(KeyError::PassphraseWrong);
    }
    Ok(plaintext)
}

/// Encrypts a PKCS#8 `PrivateKeyInfo` with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC).
fn encrypt_pkcs8(pkcs8: &[u8], passphrase: &[u8], iterations: u32) -> Result<Vec<u8>, KeyError> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| KeyError::Malformed)?;
    let mut key = [0u8; 32];
    let rounds = NonZeroU32::new(iterations).ok_or(KeyError::Malformed)?;
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        &salt,
        passphrase,
        &mut key,
    );
    let unbound = UnboundCipherKey::new(&AES_256, &key).map_err(|_| KeyError::Malformed)?;
    let encrypting =
        PaddedBlockEncryptingKey::cbc_pkcs7(unbound).map_err(|_| KeyError::Malformed)?;
    let mut ciphertext = pkcs8.to_vec();
    let context = encrypting
        .encrypt(&mut ciphertext)
        .map_err(|_| KeyError::Malformed)?;
    let iv: &[u8] = (&context).try_into().map_err(|_| KeyError::Malformed)?;

    let prf = der::sequence(&[
        &der::tlv(der::OID, OID_HMAC_SHA256),
        &der::tlv(der::NULL, &[]),
    ]);
    let kdf_params = der::sequence(&[
        &der::tlv(der::OCTET_STRING, &salt),
        &der::uint(iterations),
        &prf,
    ]);
    let kdf = der::sequence(&[&der::tlv(der::OID, OID_PBKDF2), &kdf_params]);
    let scheme = der::sequence(&[
        &der::tlv(der::OID, OID_AES256_CBC),
        &der::tlv(der::OCTET_STRING, iv),
    ]);
    let algorithm = der::sequence(&[
        &der::tlv(der::OID, OID_PBES2),
        &der::sequence(&[&kdf, &scheme]),
    ]);
    Ok(der::sequence(&[
        &algorithm,
        &der::tlv(der::OCTET_STRING, &ciphertext),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Faster than the real iteration count, for tests.
    const TEST_ITERATIONS: u32 = 2048;

    #[test]
    fn every_pem_form_loads_the_same_key() {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let pkcs8: Pkcs8V1Der = key.as_der().unwrap();
        let pkcs8_pem = pem("PRIVATE KEY", pkcs8.as_ref());
        let encrypted = pem(
            "ENCRYPTED PRIVATE KEY",
            &encrypt_pkcs8(pkcs8.as_ref(), b"s3cret", TEST_ITERATIONS).unwrap(),
        );

        for (text, passphrase) in [(&pkcs8_pem, None), (&encrypted, Some(&b"s3cret"[..]))] {
            let loaded = PrivateKey::from_pem(text, passphrase).unwrap();
            assert_eq!(loaded.bits, 2048);
            assert_eq!(format!("{loaded:?}"), "PrivateKey(RSA-2048)");
        }
        assert_eq!(
            PrivateKey::from_pem(&encrypted, None).unwrap_err(),
            KeyError::PassphraseMissing
        );
        assert_eq!(
            PrivateKey::from_pem(&encrypted, Some(b"wrong")).unwrap_err(),
            KeyError::PassphraseWrong
        );
    }

    #[test]
    fn bad_pem_is_refused_clearly() {
        let cases = [
            ("", KeyError::NoPem),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                KeyError::NoPem,
            ),
            (
                "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
                KeyError::Base64,
            ),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n", KeyError::Malformed),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: DES-EDE3-CBC,0011223344556677\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                KeyError::LegacyEncryption,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                PrivateKey::from_pem(text, None).unwrap_err(),
                expected,
                "{text}"
            );
        }
        assert!(matches!(
            PrivateKey::from_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                None
            ),
            Err(KeyError::Rejected(_))
        ));
    }
}
