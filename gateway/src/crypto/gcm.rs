//! AES-GCM with a nonce of any length, as Meta's Flows endpoint needs: its IV is
//! 16 bytes, and aws-lc-rs's AEAD API takes only 12-byte nonces.
//!
//! Built from aws-lc-rs's raw AES block cipher (ECB over counter blocks) and a
//! constant-time GHASH, following NIST SP 800-38D: for a nonce that is not 12
//! bytes, `J0 = GHASH(IV ‖ 0-pad ‖ [len(IV)]₆₄)`; counters increment the low 32
//! bits only. Checked against an independent implementation in the tests.

use aws_lc_rs::cipher::{AES_128, AES_256, EncryptingKey, UnboundCipherKey};
use aws_lc_rs::constant_time::verify_slices_are_equal;

/// The length of the authentication tag appended to the ciphertext.
pub const TAG_LEN: usize = 16;
const BLOCK: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GcmError {
    #[error("AES key must be 16 or 32 bytes")]
    KeyLength,
    #[error("the nonce must not be empty")]
    EmptyNonce,
    #[error("ciphertext shorter than its tag")]
    TooShort,
    #[error("authentication tag mismatch")]
    TagMismatch,
}

/// An AES-GCM key (AES-128 or AES-256).
pub struct Key {
    aes: EncryptingKey,
    /// The hash subkey `H = AES_K(0¹²⁸)`, as a big-endian integer.
    h: u128,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("gcm::Key(..)")
    }
}

impl Key {
    pub fn new(key: &[u8]) -> Result<Self, GcmError> {
        let algorithm = match key.len() {
            16 => &AES_128,
            32 => &AES_256,
            _ => return Err(GcmError::KeyLength),
        };
        let unbound = UnboundCipherKey::new(algorithm, key).map_err(|_| GcmError::KeyLength)?;
        let aes = EncryptingKey::ecb(unbound).map_err(|_| GcmError::KeyLength)?;
        let mut zero = [0u8; BLOCK];
        aes.encrypt(&mut zero).expect("one whole block");
        Ok(Self {
            aes,
            h: u128::from_be_bytes(zero),
        })
    }

    /// Encrypts `plaintext` and returns ciphertext ‖ tag.
    pub fn seal(&self, nonce: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, GcmError> {
        let j0 = self.j0(nonce)?;
        let mut out = plaintext.to_vec();
        let tag_mask = self.ctr(j0, &mut out);
        let tag = self.ghash_aad_ct(aad, &out) ^ tag_mask;
        out.extend_from_slice(&tag.to_be_bytes());
        Ok(out)
    }

    /// Checks the tag of ciphertext ‖ tag and returns the plaintext.
    pub fn open(&self, nonce: &[u8], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, GcmError> {
        let split = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(GcmError::TooShort)?;
        let (ciphertext, tag) = sealed.split_at(split);
        let j0 = self.j0(nonce)?;
        let mut out = ciphertext.to_vec();
        let tag_mask = self.ctr(j0, &mut out);
        let expected = self.ghash_aad_ct(aad, ciphertext) ^ tag_mask;
        verify_slices_are_equal(&expected.to_be_bytes(), tag).map_err(|_| GcmError::TagMismatch)?;
        Ok(out)
    }

    /// The pre-counter block J0.
    fn j0(&self, nonce: &[u8]) -> Result<u128, GcmError> {
        if nonce.is_empty() {
            return Err(GcmError::EmptyNonce);
        }
        if nonce.len() == 12 {
            let mut block = [0u8; BLOCK];
            block[..12].copy_from_slice(nonce);
            block[15] = 1;
            return Ok(u128::from_be_bytes(block));
        }
        let mut y = ghash_blocks(self.h, 0, nonce);
        y = gf_mul(y ^ (nonce.len() as u128 * 8), self.h);
        Ok(y)
    }

    /// XORs `data` with the keystream from `inc32(j0)` on, and returns `AES_K(j0)`,
    /// which masks the tag. One ECB call encrypts every counter block.
    fn ctr(&self, j0: u128, data: &mut [u8]) -> u128 {
        let blocks = data.len().div_ceil(BLOCK);
        let mut stream = Vec::with_capacity((blocks + 1) * BLOCK);
        stream.extend_from_slice(&j0.to_be_bytes());
        let mut counter = j0;
        for _ in 0..blocks {
            counter = inc32(counter);
            stream.extend_from_slice(&counter.to_be_bytes());
        }
        self.aes.encrypt(&mut stream).expect("whole blocks");
        for (byte, key) in data.iter_mut().zip(&stream[BLOCK..]) {
            *byte ^= key;
        }
        u128::from_be_bytes(stream[..BLOCK].try_into().expect("one block"))
    }

    fn ghash_aad_ct(&self, aad: &[u8], ciphertext: &[u8]) -> u128 {
        let y = ghash_blocks(self.h, 0, aad);
        let y = ghash_blocks(self.h, y, ciphertext);
        let lengths = ((aad.len() as u128 * 8) << 64) | (ciphertext.len() as u128 * 8);
        gf_mul(y ^ lengths, self.h)
    }
}

/// Increments the low 32 bits, wrapping within them (SP 800-38D `inc32`).
fn inc32(block: u128) -> u128 {
    let low = (block as u32).wrapping_add(1);
    (block & !0xffff_ffff) | u128::from(low)
}

/// Folds `data`, zero-padded to whole blocks, into the GHASH state `y`.
fn ghash_blocks(h: u128, mut y: u128, data: &[u8]) -> u128 {
    for chunk in data.chunks(BLOCK) {
        let mut block = [0u8; BLOCK];
        block[..chunk.len()].copy_from_slice(chunk);
        y = gf_mul(y ^ u128::from_be_bytes(block), h);
    }
    y
}

/// Multiplication in GF(2¹²⁸) with GCM's bit order, without data-dependent branches.
fn gf_mul(x: u128, y: u128) -> u128 {
    const R: u128 = 0xe1 << 120;
    let mut z = 0u128;
    let mut v = y;
    for i in 0..128 {
        let bit = (x >> (127 - i)) & 1;
        z ^= v & 0u128.wrapping_sub(bit);
        let carry = v & 1;
        v = (v >> 1) ^ (R & 0u128.wrapping_sub(carry));
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// Test cases 2, 4 and 6 of the GCM specification (McGrew and Viega), the last
    /// with a 60-byte nonce.
    #[test]
    fn known_answers() {
        let key = unhex("feffe9928665731c6d6a8f9467308308");
        let plaintext = unhex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let k = Key::new(&key).unwrap();

        let zero_key = Key::new(&[0u8; 16]).unwrap();
        let sealed = zero_key.seal(&[0u8; 12], &[], &[0u8; 16]).unwrap();
        assert_eq!(
            hex::encode(sealed),
            "0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf"
        );

        let sealed = k
            .seal(&unhex("cafebabefacedbaddecaf888"), &aad, &plaintext)
            .unwrap();
        assert_eq!(
            hex::encode(&sealed),
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091\
             5bc94fbc3221a5db94fae95ae7121a47"
        );

        let nonce = unhex(
            "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b",
        );
        let sealed = k.seal(&nonce, &aad, &plaintext).unwrap();
        assert_eq!(
            hex::encode(&sealed),
            "8ce24998625615b603a033aca13fb894be9112a5c3a211a8ba262a3cca7e2ca701e4a9a4fba43c90ccdcb281d48c7c6fd62875d2aca417034c34aee5\
             619cc5aefffe0bfa462af43c1699d050"
        );
        assert_eq!(k.open(&nonce, &aad, &sealed).unwrap(), plaintext);
    }

    #[test]
    fn tampering_is_detected() {
        let k = Key::new(&[7u8; 16]).unwrap();
        let nonce = [9u8; 16];
        let sealed = k.seal(&nonce, b"", b"hello, flows").unwrap();
        assert_eq!(k.open(&nonce, b"", &sealed).unwrap(), b"hello, flows");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                k.open(&nonce, b"", &bad),
                Err(GcmError::TagMismatch),
                "byte {i}"
            );
        }
        assert_eq!(k.open(&[8u8; 16], b"", &sealed), Err(GcmError::TagMismatch));
        assert_eq!(k.open(&nonce, b"", &sealed[..15]), Err(GcmError::TooShort));
        assert_eq!(k.seal(&[], b"", b"x").unwrap_err(), GcmError::EmptyNonce);
        assert!(matches!(Key::new(&[0u8; 15]), Err(GcmError::KeyLength)));
    }

    #[test]
    fn the_counter_wraps_within_its_low_32_bits() {
        assert_eq!(inc32(0xffff_ffff), 0);
        assert_eq!(inc32(0x1_ffff_ffff), 0x1_0000_0000);
        assert_eq!(inc32(5), 6);
    }
}
