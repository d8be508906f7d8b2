//! `key_load`: private key loading from PEM text (`PrivateKey::from_pem_capped`): PKCS#1,
//! PKCS#8, and PKCS#8 encrypted with PBES2 under a passphrase, with any text around the
//! block. The PBKDF2 cap is lowered to 2048 iterations (what OpenSSL writes by default,
//! and the test data's encrypted keys use): the cost of a file is linear in its count, and
//! the production cap is tested in the crate; a made-up file asking for millions of
//! rounds would only slow the fuzzer down.
//!
//! Input: `flags ‖ passphrase (1-byte length) ‖ PEM text`; `flags & 1`: the passphrase is
//! given (else `None`). Text that is not UTF-8 is read lossily.

#![no_main]

use flowgate_fuzz::Reader;
use flowgate_gateway::crypto::keys::{KeyError, PrivateKey};
use libfuzzer_sys::fuzz_target;

const FUZZ_MAX_ITERATIONS: u32 = 2048;

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    let flags = input.byte();
    let passphrase = input.short();
    let passphrase = (flags & 1 == 1).then_some(passphrase);
    let pem = String::from_utf8_lossy(input.rest());
    match PrivateKey::from_pem_capped(&pem, passphrase, FUZZ_MAX_ITERATIONS) {
        Ok(key) => {
            let shown = format!("{key:?}");
            let bits: usize = shown
                .strip_prefix("PrivateKey(RSA-")
                .and_then(|s| s.strip_suffix(')'))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("unexpected Debug output {shown}"));
            assert!((2048..=8192).contains(&bits), "{shown}");
            // Not made with this key: refused, never a panic.
            assert!(key.decrypt(&[0u8; 16]).is_none());
        }
        Err(e) => {
            if let KeyError::TooManyIterations { count, max } = e {
                assert!(count > max && max == FUZZ_MAX_ITERATIONS);
            }
            assert!(!e.to_string().is_empty());
        }
    }
});
