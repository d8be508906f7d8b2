//! RSA private keys for Meta's encrypted endpoint: loading PEM (PKCS#1, PKCS#8,
//! or PKCS#8 encrypted with PBES2), generating a key pair, and the OAEP decryption
//! of the request's AES key.
//!
//! The RSA operations and key generation are aws-lc-rs's. The key file structures
//! (PEM, PKCS#1, PKCS#8, and PBES2 with its PBKDF2 and block cipher) are RustCrypto's
//! `pkcs1`, `pkcs8` and `pkcs5`, since aws-lc-rs reads only unencrypted PKCS#8.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey,
};
use pkcs8::der::pem::{LineEnding, PemLabel};
use pkcs8::der::{Decode, Encode};
use pkcs8::pkcs5::{self, pbes2};
use pkcs8::{EncryptedPrivateKeyInfo, PrivateKeyInfo};
use zeroize::Zeroizing;

/// PBKDF2 iterations for keys this crate encrypts (OWASP's 2023 figure for HMAC-SHA256).
const KEYGEN_ITERATIONS: u32 = 600_000;

/// The most PBKDF2 iterations a key file may ask for. The count is the file's to
/// choose, and the derivation runs before anything else can be checked, so a
/// damaged or hostile file could otherwise hold the start for hours (u32::MAX rounds
/// of HMAC-SHA-512). Ten million is over ten times OWASP's 2023 advice for
/// HMAC-SHA256 (600,000), and takes a few seconds at most on a server core.
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

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
    #[error(
        "the key asks for {count} PBKDF2 iterations, more than the {max} allowed; \
         re-encrypt it with `openssl pkcs8 -topk8 -v2 aes-256-cbc -iter 600000`"
    )]
    TooManyIterations { count: u32, max: u32 },
    #[error("the key is malformed")]
    Malformed,
    #[error("not a usable RSA key (2048 to 8192 bits): {0}")]
    Rejected(String),
}

/// What `openssl pkcs8 -v2` and this crate write, and what is read.
const SUPPORTED: &str =
    "PBES2 with PBKDF2 (HMAC-SHA1/256/384/512) and AES-128/192/256-CBC or DES-EDE3-CBC";

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
        Self::from_pem_capped(pem, passphrase, MAX_PBKDF2_ITERATIONS)
    }

    /// [`from_pem`](Self::from_pem) with a lower PBKDF2 iteration cap than
    /// [`MAX_PBKDF2_ITERATIONS`] (a higher one is lowered to it): for a caller that must
    /// bound the time one key file can take, such as the fuzz target reading thousands of
    /// made-up files a second.
    pub fn from_pem_capped(
        pem: &str,
        passphrase: Option<&[u8]>,
        max_iterations: u32,
    ) -> Result<Self, KeyError> {
        let block = first_private_key_block(pem)?;
        // RFC 7468 has no headers; OpenSSL's legacy encryption puts its parameters
        // there. Name that case before the strict decoder refuses it as malformed.
        if block.contains("Proc-Type:") && block.contains("ENCRYPTED") {
            return Err(KeyError::LegacyEncryption);
        }
        let (label, der) = pem_rfc7468::decode_vec(block.as_bytes()).map_err(|e| match e {
            pem_rfc7468::Error::Base64(_) => KeyError::Base64,
            _ => KeyError::Malformed,
        })?;
        let der = Zeroizing::new(der);
        match label {
            "PRIVATE KEY" => Self::from_pkcs8(&der),
            "RSA PRIVATE KEY" => Self::from_pkcs8(&pkcs1_to_pkcs8(&der)?),
            "ENCRYPTED PRIVATE KEY" => Self::from_pkcs8(&decrypt_pkcs8(
                &der,
                passphrase.ok_or(KeyError::PassphraseMissing)?,
                max_iterations.min(MAX_PBKDF2_ITERATIONS),
            )?),
            _ => Err(KeyError::NoPem),
        }
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
        let mut out = Zeroizing::new(vec![0u8; self.oaep.min_output_size()]);
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
        None => pem("PRIVATE KEY", pkcs8.as_ref())?,
        Some(passphrase) => encrypt_pkcs8(pkcs8.as_ref(), passphrase, KEYGEN_ITERATIONS)?,
    };
    Ok(GeneratedKey {
        private_pem: private_pem.to_string(),
        public_pem: pem("PUBLIC KEY", public.as_ref())?.to_string(),
    })
}

/// Encodes DER as an RFC 7468 PEM block with 64-character lines.
fn pem(label: &str, der: &[u8]) -> Result<Zeroizing<String>, KeyError> {
    pem_rfc7468::encode_string(label, LineEnding::LF, der)
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Malformed)
}

/// The text of the first private-key PEM block, from its BEGIN line to its END
/// line: a file may hold other blocks (a certificate) or text around it.
fn first_private_key_block(pem: &str) -> Result<&str, KeyError> {
    let mut from = 0;
    while let Some(found) = pem[from..].find("-----BEGIN ") {
        let start = from + found;
        let line_end = pem[start..].find('\n').map_or(pem.len(), |i| start + i);
        let label = pem[start..line_end]
            .trim_end()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"));
        match label {
            Some(label) if label.ends_with("PRIVATE KEY") => {
                let end = format!("-----END {label}-----");
                let stop = pem[line_end..].find(&end).ok_or(KeyError::Malformed)?;
                return Ok(&pem[start..line_end + stop + end.len()]);
            }
            _ => from = line_end,
        }
    }
    Err(KeyError::NoPem)
}

/// Wraps a PKCS#1 `RSAPrivateKey` in a PKCS#8 `PrivateKeyInfo`, the form aws-lc-rs reads.
fn pkcs1_to_pkcs8(pkcs1_der: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    pkcs1::RsaPrivateKey::from_der(pkcs1_der).map_err(|_| KeyError::Malformed)?;
    PrivateKeyInfo::new(pkcs1::ALGORITHM_ID, pkcs1_der)
        .to_der()
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Malformed)
}

/// Decrypts a PKCS#8 `EncryptedPrivateKeyInfo` protected with PBES2, after checking
/// that its scheme is one we read and that its iteration count is bounded.
fn decrypt_pkcs8(
    der: &[u8],
    passphrase: &[u8],
    max_iterations: u32,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let info = EncryptedPrivateKeyInfo::from_der(der).map_err(|e| match e.kind() {
        // An algorithm the crate does not know, in any position of the scheme.
        pkcs8::der::ErrorKind::OidUnknown { .. } => KeyError::Unsupported(SUPPORTED),
        _ => KeyError::Malformed,
    })?;
    let params = match &info.encryption_algorithm {
        pkcs5::EncryptionScheme::Pbes2(params) => params,
        _ => {
            return Err(KeyError::Unsupported(
                "only PBES2 is supported (use openssl pkcs8 -v2)",
            ));
        }
    };
    match &params.kdf {
        pbes2::Kdf::Pbkdf2(pbkdf2) if pbkdf2.iteration_count > max_iterations => {
            return Err(KeyError::TooManyIterations {
                count: pbkdf2.iteration_count,
                max: max_iterations,
            });
        }
        pbes2::Kdf::Pbkdf2(_) => {}
        _ => {
            return Err(KeyError::Unsupported(
                "only PBKDF2 is supported as the key derivation",
            ));
        }
    }
    let plaintext = info.decrypt(passphrase).map_err(|e| match e {
        pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::UnsupportedAlgorithm { .. }) => {
            KeyError::Unsupported(SUPPORTED)
        }
        // A wrong passphrase shows as bad padding or as a plaintext that is not DER.
        _ => KeyError::PassphraseWrong,
    })?;
    let plaintext = Zeroizing::new(plaintext.as_bytes().to_vec());
    // The rare wrong passphrase whose output still looks like DER fails here.
    PrivateKeyInfo::from_der(&plaintext).map_err(|_| KeyError::PassphraseWrong)?;
    Ok(plaintext)
}

/// Encrypts a PKCS#8 `PrivateKeyInfo` with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC,
/// random salt and IV) and returns it as an `ENCRYPTED PRIVATE KEY` PEM.
fn encrypt_pkcs8(
    pkcs8_der: &[u8],
    passphrase: &[u8],
    iterations: u32,
) -> Result<Zeroizing<String>, KeyError> {
    let rng = SystemRandom::new();
    let (mut salt, mut iv) = ([0u8; 16], [0u8; 16]);
    rng.fill(&mut salt).map_err(|_| KeyError::Malformed)?;
    rng.fill(&mut iv).map_err(|_| KeyError::Malformed)?;
    let params = pbes2::Parameters::pbkdf2_sha256_aes256cbc(iterations, &salt, &iv)
        .map_err(|_| KeyError::Malformed)?;
    let encrypted = PrivateKeyInfo::from_der(pkcs8_der)
        .map_err(|_| KeyError::Malformed)?
        .encrypt_with_params(params, passphrase)
        .map_err(|_| KeyError::Malformed)?;
    encrypted
        .to_pem(EncryptedPrivateKeyInfo::PEM_LABEL, LineEnding::LF)
        .map_err(|_| KeyError::Malformed)
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
        let pkcs8_pem = pem("PRIVATE KEY", pkcs8.as_ref()).unwrap();
        let pkcs1 = PrivateKeyInfo::from_der(pkcs8.as_ref())
            .unwrap()
            .private_key;
        let pkcs1_pem = pem("RSA PRIVATE KEY", pkcs1).unwrap();
        let encrypted = encrypt_pkcs8(pkcs8.as_ref(), b"s3cret", TEST_ITERATIONS).unwrap();

        for (text, passphrase) in [
            (&pkcs8_pem, None),
            (&pkcs1_pem, None),
            (&encrypted, Some(&b"s3cret"[..])),
        ] {
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

    /// `EncryptedPrivateKeyInfo` PEM with the given scheme around `data`; nothing is
    /// derived or encrypted, so a test can name any parameters cheaply.
    fn encrypted_pem(scheme: pkcs5::EncryptionScheme<'_>, data: &[u8]) -> String {
        let der = EncryptedPrivateKeyInfo {
            encryption_algorithm: scheme,
            encrypted_data: data,
        }
        .to_der()
        .unwrap();
        pem("ENCRYPTED PRIVATE KEY", &der).unwrap().to_string()
    }

    /// The iteration count is the file's to choose; beyond the cap the file is
    /// refused before any derivation (u32::MAX rounds would take hours).
    #[test]
    fn pbkdf2_iterations_are_capped_before_deriving() {
        let (salt, iv) = ([1u8; 16], [2u8; 16]);
        for count in [MAX_PBKDF2_ITERATIONS + 1, u32::MAX] {
            // Built field by field: the crate's constructor refuses such counts, its
            // decoder does not.
            let params = pbes2::Parameters {
                kdf: pbes2::Kdf::Pbkdf2(pbes2::Pbkdf2Params {
                    salt: &salt,
                    iteration_count: count,
                    key_length: None,
                    prf: pbes2::Pbkdf2Prf::HmacWithSha256,
                }),
                encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: &iv },
            };
            let text = encrypted_pem(params.into(), &[0u8; 32]);
            let started = std::time::Instant::now();
            let err = PrivateKey::from_pem(&text, Some(b"pass")).unwrap_err();
            assert_eq!(
                err,
                KeyError::TooManyIterations {
                    count,
                    max: MAX_PBKDF2_ITERATIONS
                }
            );
            assert!(err.to_string().contains("10000000"), "{err}");
            assert!(started.elapsed() < std::time::Duration::from_secs(5));
        }
        // Below the cap the count is honoured: the file is derived and decrypted.
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let pkcs8: Pkcs8V1Der = key.as_der().unwrap();
        let text = encrypt_pkcs8(pkcs8.as_ref(), b"pass", TEST_ITERATIONS).unwrap();
        assert!(PrivateKey::from_pem(&text, Some(b"pass")).is_ok());

        // A caller may lower the cap, never raise it.
        assert_eq!(
            PrivateKey::from_pem_capped(&text, Some(b"pass"), TEST_ITERATIONS - 1).unwrap_err(),
            KeyError::TooManyIterations {
                count: TEST_ITERATIONS,
                max: TEST_ITERATIONS - 1
            }
        );
        assert!(PrivateKey::from_pem_capped(&text, Some(b"pass"), TEST_ITERATIONS).is_ok());
        let text = encrypted_pem(
            pbes2::Parameters {
                kdf: pbes2::Kdf::Pbkdf2(pbes2::Pbkdf2Params {
                    salt: &salt,
                    iteration_count: MAX_PBKDF2_ITERATIONS + 1,
                    key_length: None,
                    prf: pbes2::Pbkdf2Prf::HmacWithSha256,
                }),
                encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: &iv },
            }
            .into(),
            &[0u8; 32],
        );
        assert_eq!(
            PrivateKey::from_pem_capped(&text, Some(b"pass"), u32::MAX).unwrap_err(),
            KeyError::TooManyIterations {
                count: MAX_PBKDF2_ITERATIONS + 1,
                max: MAX_PBKDF2_ITERATIONS
            }
        );
    }

    #[test]
    fn other_key_encryptions_are_named() {
        let (salt, iv) = ([1u8; 16], [2u8; 16]);
        let pbes1 = pkcs5::pbes1::Algorithm {
            encryption: pkcs5::pbes1::EncryptionScheme::PbeWithSha1AndDesCbc,
            parameters: pkcs5::pbes1::Parameters {
                salt: [3u8; 8],
                iteration_count: 2048,
            },
        };
        let scrypt = pbes2::Parameters {
            kdf: pbes2::Kdf::Scrypt(pbes2::ScryptParams {
                salt: &salt,
                cost_parameter: 1 << 14,
                block_size: 8,
                parallelization: 1,
                key_length: None,
            }),
            encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: &iv },
        };
        let cases = [(pbes1.into(), "only PBES2"), (scrypt.into(), "only PBKDF2")];
        for (scheme, expected) in cases {
            let err = PrivateKey::from_pem(&encrypted_pem(scheme, &[0u8; 32]), Some(b"pass"))
                .unwrap_err();
            assert!(
                matches!(&err, KeyError::Unsupported(m) if m.contains(expected)),
                "{err}"
            );
        }
    }

    /// What keygen writes is a standard PBES2 file: OpenSSL reads it with the
    /// passphrase (when `openssl` is installed; the structure is the same at any
    /// iteration count, so a small one keeps the test quick).
    #[test]
    fn openssl_reads_generated_encrypted_keys() {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let pkcs8: Pkcs8V1Der = key.as_der().unwrap();
        let text = encrypt_pkcs8(pkcs8.as_ref(), b"correct horse", TEST_ITERATIONS).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, text.as_bytes()).unwrap();
        let output = match std::process::Command::new("openssl")
            .args(["pkcs8", "-passin", "env:FLOWGATE_TEST_PASS", "-in"])
            .arg(&path)
            .env("FLOWGATE_TEST_PASS", "correct horse")
            .output()
        {
            Ok(output) => output,
            Err(e) => {
                // CI installs openssl: there, a missing one is a failure, not a skip.
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI: openssl not run ({e})"
                );
                eprintln!("SKIPPED: openssl not run ({e}); the interoperability check");
                return;
            }
        };
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            *pem("PRIVATE KEY", pkcs8.as_ref()).unwrap()
        );
    }
}
