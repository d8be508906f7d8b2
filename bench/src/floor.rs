//! The floor: one RSA-2048 OAEP-SHA256 decryption with aws-lc-rs (the library the
//! gateway uses), timed on one thread in the same run as everything else. Every
//! encrypted request costs at least this much CPU, and it scales with the machine, so
//! each run's CPU per request is also reported as a multiple of it.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey,
};
use serde::Serialize;

/// The floor as measured.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Floor {
    /// Microseconds of one decryption on one core.
    pub rsa_decrypt_us: f64,
    pub operations: u64,
}

/// Decrypts one wrapped AES key over and over for about `duration`.
pub fn measure(duration: Duration) -> anyhow::Result<Floor> {
    let unspecified = |_| anyhow!("aws-lc-rs RSA failed");
    let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).map_err(unspecified)?;
    let public = OaepPublicEncryptingKey::new(private.public_key()).map_err(unspecified)?;
    let private = OaepPrivateDecryptingKey::new(private).map_err(unspecified)?;

    let mut wrapped = vec![0u8; public.ciphertext_size()];
    let wrapped = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, &[7u8; 16], &mut wrapped, None)
        .map_err(unspecified)?
        .to_vec();
    let mut plain = vec![0u8; private.min_output_size()];

    let start = Instant::now();
    let mut operations = 0u64;
    while start.elapsed() < duration || operations < 10 {
        let key = private
            .decrypt(&OAEP_SHA256_MGF1SHA256, &wrapped, &mut plain, None)
            .map_err(unspecified)?;
        std::hint::black_box(key);
        operations += 1;
    }
    Ok(Floor {
        rsa_decrypt_us: start.elapsed().as_secs_f64() * 1e6 / operations as f64,
        operations,
    })
}
