//! Encryption of webhook secrets at rest.
//!
//! Webhook secrets must be readable (we sign with them and show them to their
//! owner on request), so they are encrypted rather than hashed. Each value is
//! sealed with XChaCha20-Poly1305 under a random 24-byte nonce; the stored
//! form is `v1:` + base64(nonce ‖ ciphertext ‖ tag). The webhook id is bound
//! as associated data, so a ciphertext copied onto another row does not open.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const VERSION_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 24;

/// A 32-byte key; its Debug output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey([u8; 32]);

impl EncryptionKey {
    /// Wraps raw key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        EncryptionKey(bytes)
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|_| CryptoError::Random)?;
        Ok(EncryptionKey(bytes))
    }

    /// The key as base64, for writing the `--dev` key file.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([redacted])")
    }
}

/// Failures sealing or opening a secret.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The operating system's random generator failed.
    #[error("the operating system's random number generator is unavailable")]
    Random,
    /// The stored value is not in the sealed format or was tampered with, or the key differs.
    #[error("a stored secret cannot be decrypted: wrong WEBHOOK_ENCRYPTION_KEY or corrupted data")]
    Open,
}

/// Seals and opens webhook secrets.
#[derive(Clone)]
pub struct SecretCipher {
    aead: XChaCha20Poly1305,
}

impl fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretCipher")
    }
}

impl SecretCipher {
    /// A cipher using `key`.
    pub fn new(key: &EncryptionKey) -> Self {
        SecretCipher {
            aead: XChaCha20Poly1305::new((&key.0).into()),
        }
    }

    /// Encrypts `plaintext`, binding it to `context` (the owning row's id).
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let sealed = self
            .aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            // Encryption only fails for plaintexts beyond the cipher's length limit (256 GiB).
            .map_err(|_| CryptoError::Open)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(format!("{VERSION_PREFIX}{}", BASE64.encode(blob)))
    }

    /// Decrypts a value produced by [`SecretCipher::seal`] with the same `context`.
    pub fn open(&self, stored: &str, context: &str) -> Result<String, CryptoError> {
        let b64 = stored
            .strip_prefix(VERSION_PREFIX)
            .ok_or(CryptoError::Open)?;
        let blob = BASE64.decode(b64).map_err(|_| CryptoError::Open)?;
        if blob.len() < NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let plain = self
            .aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_context_binding() {
        let cipher = SecretCipher::new(&EncryptionKey::new([7; 32]));
        let sealed = cipher.seal("whsec_abc", "wh_1").unwrap();
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(cipher.open(&sealed, "wh_1").unwrap(), "whsec_abc");
        assert!(cipher.open(&sealed, "wh_2").is_err());
        let other = SecretCipher::new(&EncryptionKey::new([8; 32]));
        assert!(other.open(&sealed, "wh_1").is_err());
        assert_ne!(
            cipher.seal("whsec_abc", "wh_1").unwrap(),
            sealed,
            "nonces are random"
        );
    }

    #[test]
    fn key_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", EncryptionKey::new([1; 32])),
            "EncryptionKey([redacted])"
        );
    }
}
