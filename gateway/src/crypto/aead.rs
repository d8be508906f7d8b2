//! AES-128-GCM with Meta's 16-byte IV as the nonce, on RustCrypto's `aes-gcm`.
//!
//! aws-lc-rs's AEAD API takes only 12-byte nonces, so this one primitive comes from
//! `aes-gcm` with a `U16` nonce size (NIST SP 800-38D derives the pre-counter block
//! from a nonce of any length by GHASH). On x86_64 the `aes` and `polyval` crates
//! detect AES-NI and carry-less multiply at run time and use them; elsewhere, or on
//! an old CPU, they fall back to constant-time software.
//!
//! Meta's protocol is AES-128 only: a key of any other length is refused, so a
//! client that sends a 32-byte key gets 421 like any other undecryptable request.

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes128;
use aes_gcm::{AesGcm, Nonce as GcmNonce};

/// The length of the AES key: the protocol is AES-128.
pub const KEY_LEN: usize = 16;
/// The length of the authentication tag appended to the ciphertext.
pub const TAG_LEN: usize = 16;

/// Meta's IV, used as the GCM nonce.
pub type Nonce = [u8; 16];

/// AES-128-GCM with a 16-byte nonce and a 16-byte tag.
type Aes128Gcm16 = AesGcm<Aes128, U16>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AeadError {
    #[error("the AES key must be 16 bytes (AES-128)")]
    KeyLength,
    #[error("ciphertext shorter than its tag")]
    TooShort,
    #[error("authentication tag mismatch")]
    TagMismatch,
    #[error("plaintext longer than AES-GCM allows")]
    TooLong,
}

/// An AES-128-GCM key. Its `Debug` shows no key material, and the expanded key and
/// the GHASH subkey are wiped on drop (the `zeroize` features of `aes` and `polyval`).
pub struct Key(Aes128Gcm16);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("aead::Key(AES-128-GCM)")
    }
}

impl Key {
    /// A key from its raw bytes; only 16-byte keys are accepted.
    pub fn new(key: &[u8]) -> Result<Self, AeadError> {
        if key.len() != KEY_LEN {
            return Err(AeadError::KeyLength);
        }
        Aes128Gcm16::new_from_slice(key)
            .map(Self)
            .map_err(|_| AeadError::KeyLength)
    }

    /// Encrypts `plaintext` and returns ciphertext ‖ tag.
    pub fn seal(&self, nonce: &Nonce, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, AeadError> {
        self.0
            .encrypt(
                GcmNonce::<U16>::from_slice(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| AeadError::TooLong)
    }

    /// Checks the tag of ciphertext ‖ tag (in constant time) and returns the plaintext.
    pub fn open(&self, nonce: &Nonce, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AeadError> {
        if sealed.len() < TAG_LEN {
            return Err(AeadError::TooShort);
        }
        self.0
            .decrypt(
                GcmNonce::<U16>::from_slice(nonce),
                Payload { msg: sealed, aad },
            )
            .map_err(|_| AeadError::TagMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn nonce(s: &str) -> Nonce {
        unhex(s).try_into().unwrap()
    }

    /// The key, plaintext and AAD of test cases 3/4 of the GCM specification (McGrew
    /// and Viega). The specification's cases 2, 4 and 6 use 12- and 60-byte nonces,
    /// which a 16-byte nonce type cannot take; the expected values here are for a
    /// 16-byte nonce (the first 16 bytes of case 6's), computed with OpenSSL's
    /// AES-GCM, which reproduces case 6 exactly — an implementation independent of
    /// this crate, of RustCrypto, and of the code this module replaced.
    #[test]
    fn known_answers_with_a_16_byte_nonce() {
        let key = Key::new(&unhex("feffe9928665731c6d6a8f9467308308")).unwrap();
        let plaintext = unhex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let iv = nonce("9313225df88406e555909c5aff5269aa");
        let cases = [
            (
                &aad[..],
                "47f4dd689abdbee500ad1ae94a4327c53716e32c8c6cc992a5bdc92fb624fb4d54ac9c89eae81397593c456d1ee59f347ab0b1e471f639b206dfb368\
                 eeed18587b49af1a81496bfa07f3badc",
            ),
            (
                &[][..],
                "47f4dd689abdbee500ad1ae94a4327c53716e32c8c6cc992a5bdc92fb624fb4d54ac9c89eae81397593c456d1ee59f347ab0b1e471f639b206dfb368\
                 7931fc2850796b910f1829e6581a0c1e",
            ),
        ];
        for (aad, expected) in cases {
            let sealed = key.seal(&iv, aad, &plaintext).unwrap();
            assert_eq!(hex::encode(&sealed), expected);
            assert_eq!(key.open(&iv, aad, &sealed).unwrap(), plaintext);
        }

        // The all-zero key, nonce and block (as in the specification's case 2, with a
        // 16-byte nonce).
        let zero = Key::new(&[0u8; 16]).unwrap();
        assert_eq!(
            hex::encode(zero.seal(&[0u8; 16], &[], &[0u8; 16]).unwrap()),
            "a3b22b8449afafbcd6c09f2cfa9de2bed8b820bab954bd1647d8a9c3d534e7a3"
        );
    }

    #[test]
    fn tampering_is_detected() {
        let k = Key::new(&[7u8; 16]).unwrap();
        let nonce = [9u8; 16];
        let sealed = k.seal(&nonce, b"", b"hello, flows").unwrap();
        assert_eq!(sealed.len(), b"hello, flows".len() + TAG_LEN);
        assert_eq!(k.open(&nonce, b"", &sealed).unwrap(), b"hello, flows");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                k.open(&nonce, b"", &bad),
                Err(AeadError::TagMismatch),
                "byte {i}"
            );
        }
        assert_eq!(
            k.open(&[8u8; 16], b"", &sealed),
            Err(AeadError::TagMismatch)
        );
        assert_eq!(k.open(&nonce, b"x", &sealed), Err(AeadError::TagMismatch));
        assert_eq!(k.open(&nonce, b"", &sealed[..15]), Err(AeadError::TooShort));
        assert_eq!(format!("{k:?}"), "aead::Key(AES-128-GCM)");
    }

    /// Meta's protocol is AES-128: a 32-byte (AES-256) key, or any other length, is refused.
    #[test]
    fn only_16_byte_keys_are_accepted() {
        for len in [0, 15, 17, 24, 32] {
            assert!(
                matches!(Key::new(&vec![1u8; len]), Err(AeadError::KeyLength)),
                "{len}"
            );
        }
        assert!(Key::new(&[1u8; 16]).is_ok());
    }

    /// Opening ~700 KB with a wrong tag: the whole buffer is authenticated before the
    /// refusal. A timing to read, not an assertion: `cargo test -p flowgate-gateway
    /// --release -- --ignored --nocapture open_throughput`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn open_throughput() {
        let key = Key::new(&[3u8; 16]).unwrap();
        let nonce = [5u8; 16];
        let mut sealed = key.seal(&nonce, &[], &vec![0x5a; 700 * 1024]).unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        let rounds = 50;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            assert_eq!(key.open(&nonce, &[], &sealed), Err(AeadError::TagMismatch));
        }
        let elapsed = start.elapsed();
        let mb = (sealed.len() * rounds) as f64 / 1e6;
        println!(
            "open with a wrong tag: {:.1} MB/s ({:?} per 700 KiB)",
            mb / elapsed.as_secs_f64(),
            elapsed / rounds as u32
        );
    }
}
