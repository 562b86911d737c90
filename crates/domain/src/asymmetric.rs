//! A webhook's Ed25519 signing keys (`"signing": "ed25519"`): the current
//! key, and during a rotation's grace period the previous one, which keeps
//! signing as a rotated-out HMAC secret does.

use std::fmt;

use serde::{Deserialize, Serialize};
use webhook_verify::asymmetric::{SigningKey, sign_v1a};

use crate::webhook::SecretGenerationError;

/// The current key and, until the end of its grace period (unix ms), the previous one.
#[derive(Clone)]
pub struct Ed25519Signing {
    current: SigningKey,
    previous: Option<(SigningKey, i64)>,
}

impl PartialEq for Ed25519Signing {
    fn eq(&self, other: &Self) -> bool {
        self.stored() == other.stored()
    }
}

impl Eq for Ed25519Signing {}

impl fmt::Debug for Ed25519Signing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519Signing")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// Stored form: secret keys in clear, so it is sealed with the other
/// endpoint options before the store sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredSigning {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_until: Option<i64>,
}

fn random_key() -> Result<SigningKey, SecretGenerationError> {
    let mut seed = [0_u8; 32];
    getrandom::fill(&mut seed).map_err(|e| SecretGenerationError(e.to_string()))?;
    Ok(SigningKey::from_seed(seed))
}

impl Ed25519Signing {
    /// A fresh key from the operating system's generator.
    pub fn generate() -> Result<Self, SecretGenerationError> {
        Ok(Ed25519Signing {
            current: random_key()?,
            previous: None,
        })
    }

    /// A new current key; the current one keeps signing until `grace_until` (unix ms).
    pub fn rotated(&self, grace_until: i64) -> Result<Self, SecretGenerationError> {
        Ok(Ed25519Signing {
            current: random_key()?,
            previous: Some((self.current.clone(), grace_until)),
        })
    }

    /// `whpk_...` of the current key: what receivers verify with.
    pub fn public_key(&self) -> String {
        self.current.public_key()
    }

    /// `whpk_...` of the previous key while it still signs at `now_ms`.
    pub fn previous_public_key(&self, now_ms: i64) -> Option<String> {
        self.previous
            .as_ref()
            .filter(|(_, until)| *until > now_ms)
            .map(|(key, _)| key.public_key())
    }

    /// The `webhook-signature` value: `v1a,` entries of the current key
    /// and, during its grace period, the previous one.
    pub fn sign(&self, msg_id: &str, timestamp_secs: i64, body: &[u8], now_ms: i64) -> String {
        let mut header = sign_v1a(&self.current, msg_id, timestamp_secs, body);
        if let Some((previous, until)) = &self.previous
            && *until > now_ms
        {
            header.push(' ');
            header.push_str(&sign_v1a(previous, msg_id, timestamp_secs, body));
        }
        header
    }

    pub(crate) fn stored(&self) -> StoredSigning {
        StoredSigning {
            key: self.current.to_secret_string(),
            previous: self.previous.as_ref().map(|(k, _)| k.to_secret_string()),
            previous_until: self.previous.as_ref().map(|(_, until)| *until),
        }
    }

    pub(crate) fn from_stored(stored: StoredSigning) -> Result<Self, String> {
        let current = SigningKey::parse(&stored.key).map_err(|e| e.to_string())?;
        let previous = match (stored.previous, stored.previous_until) {
            (Some(key), Some(until)) => {
                Some((SigningKey::parse(&key).map_err(|e| e.to_string())?, until))
            }
            _ => None,
        };
        Ok(Ed25519Signing { current, previous })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webhook_verify::StandardHeaders;
    use webhook_verify::asymmetric::verify_v1a;

    #[test]
    fn rotation_keeps_the_previous_key_signing_during_the_grace_period() {
        let first = Ed25519Signing::generate().unwrap();
        let second = first.rotated(2_000).unwrap();
        assert_ne!(first.public_key(), second.public_key());
        assert_eq!(second.previous_public_key(1_000), Some(first.public_key()));
        assert_eq!(second.previous_public_key(2_000), None);
        let header = second.sign("msg_1", 1, b"{}", 1_000);
        let headers = StandardHeaders {
            id: Some("msg_1"),
            timestamp: Some("1"),
            signature: Some(&header),
        };
        for key in [first.public_key(), second.public_key()] {
            assert_eq!(verify_v1a(&key, headers, b"{}", 1, 300), Ok(()));
        }
        let after = second.sign("msg_1", 1, b"{}", 2_000);
        let headers = StandardHeaders {
            signature: Some(&after),
            ..headers
        };
        assert!(verify_v1a(&first.public_key(), headers, b"{}", 1, 300).is_err());
        let back = Ed25519Signing::from_stored(second.stored()).unwrap();
        assert_eq!(back, second);
        assert!(!format!("{second:?}").contains(&second.stored().key[5..]));
    }
}
