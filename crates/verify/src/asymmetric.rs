//! Standard Webhooks' asymmetric scheme: `webhook-signature: v1a,<base64>`,
//! an Ed25519 signature over `{id}.{timestamp}.{body}`. The sender keeps a
//! `whsk_` secret key; a receiver needs only the `whpk_` public key, which
//! cannot sign.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, Verifier as _, VerifyingKey};

use crate::{StandardHeaders, VerifyError};

/// Prefix of Ed25519 secret keys.
pub const SECRET_KEY_PREFIX: &str = "whsk_";
/// Prefix of Ed25519 public keys.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not `whsk_` (or `whpk_`) followed by base64.
    #[error("the key must be {0} followed by base64")]
    Format(&'static str),
    /// The decoded key has the wrong length, or its two halves disagree.
    #[error("the key is not an Ed25519 {0} key")]
    Invalid(&'static str),
}

/// An Ed25519 signing key. `Debug` never shows it; there is no `Display`.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public_key())
    }
}

impl SigningKey {
    /// The key of a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Reads `whsk_` + base64 of the 32-byte seed, or of the 64 bytes of
    /// seed and public key (libsodium's layout), whose halves must agree.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bytes = text
            .strip_prefix(SECRET_KEY_PREFIX)
            .and_then(|b64| BASE64.decode(b64).ok())
            .ok_or(KeyError::Format(SECRET_KEY_PREFIX))?;
        let seed: [u8; 32] = bytes
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or(KeyError::Invalid("secret"))?;
        let key = SigningKey::from_seed(seed);
        match bytes.len() {
            32 => Ok(key),
            64 if bytes[32..] == key.0.verifying_key().to_bytes() => Ok(key),
            _ => Err(KeyError::Invalid("secret")),
        }
    }

    /// `whsk_` + base64 of seed and public key (64 bytes).
    pub fn to_secret_string(&self) -> String {
        let mut bytes = self.0.to_bytes().to_vec();
        bytes.extend_from_slice(&self.0.verifying_key().to_bytes());
        format!("{SECRET_KEY_PREFIX}{}", BASE64.encode(bytes))
    }

    /// `whpk_` + base64 of the 32-byte public key: what receivers verify with.
    pub fn public_key(&self) -> String {
        format!(
            "{PUBLIC_KEY_PREFIX}{}",
            BASE64.encode(self.0.verifying_key().to_bytes())
        )
    }
}

/// One `v1a,<base64>` entry of the `webhook-signature` header.
pub fn sign_v1a(key: &SigningKey, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mut message = Vec::with_capacity(msg_id.len() + ts.len() + body.len() + 2);
    message.extend_from_slice(msg_id.as_bytes());
    message.push(b'.');
    message.extend_from_slice(ts.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    let signature = key.0.sign(&message);
    format!("v1a,{}", BASE64.encode(signature.to_bytes()))
}

/// Reads a `whpk_` public key.
fn verifying_key(public_key: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = public_key
        .strip_prefix(PUBLIC_KEY_PREFIX)
        .and_then(|b64| BASE64.decode(b64).ok())
        .ok_or(KeyError::Format(PUBLIC_KEY_PREFIX))?;
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::Invalid("public"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Invalid("public"))
}

/// Checks Standard Webhooks headers signed with Ed25519: the timestamp must
/// be within `tolerance_secs` of `now_unix`, and one `v1a` entry must verify
/// under `public_key` (`whpk_...`). `v1` entries are skipped.
pub fn verify_v1a(
    public_key: &str,
    headers: StandardHeaders<'_>,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let key = verifying_key(public_key).map_err(|_| VerifyError::MalformedKey)?;
    let id = headers.id.ok_or(VerifyError::MissingHeader("webhook-id"))?;
    let ts_text = headers
        .timestamp
        .ok_or(VerifyError::MissingHeader("webhook-timestamp"))?;
    let signatures = headers
        .signature
        .ok_or(VerifyError::MissingHeader("webhook-signature"))?;
    let ts: i64 = ts_text
        .trim()
        .parse()
        .map_err(|_| VerifyError::MalformedHeader("webhook-timestamp"))?;
    if now_unix.abs_diff(ts) > tolerance_secs {
        return Err(VerifyError::TimestampOutOfTolerance { tolerance_secs });
    }
    let mut message = Vec::with_capacity(id.len() + ts_text.len() + body.len() + 2);
    message.extend_from_slice(id.as_bytes());
    message.push(b'.');
    message.extend_from_slice(ts_text.trim().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    // A signature is public: verifying entries one by one reveals nothing.
    let matched = signatures
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1a,"))
        .filter_map(|b64| BASE64.decode(b64).ok())
        .filter_map(|raw| Signature::from_slice(&raw).ok())
        .any(|signature| key.verify(&message, &signature).is_ok());
    if matched {
        Ok(())
    } else {
        Err(VerifyError::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        hex::decode(text).unwrap()
    }

    /// RFC 8032 §7.1, TEST 1: the key pair as Ed25519 defines it.
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn rfc_key() -> SigningKey {
        SigningKey::from_seed(unhex(SEED).try_into().unwrap())
    }

    #[test]
    fn keys_follow_rfc_8032_and_the_whsk_whpk_formats() {
        let key = rfc_key();
        assert_eq!(
            key.public_key(),
            format!("whpk_{}", BASE64.encode(unhex(PUBLIC)))
        );
        let text = key.to_secret_string();
        assert!(text.starts_with("whsk_"));
        assert_eq!(
            SigningKey::parse(&text).unwrap().public_key(),
            key.public_key()
        );
        let seed_only = format!("whsk_{}", BASE64.encode(unhex(SEED)));
        assert_eq!(
            SigningKey::parse(&seed_only).unwrap().public_key(),
            key.public_key()
        );
        let mut wrong_half = unhex(SEED);
        wrong_half.extend_from_slice(&[0; 32]);
        let wrong = format!("whsk_{}", BASE64.encode(wrong_half));
        assert_eq!(
            SigningKey::parse(&wrong).unwrap_err(),
            KeyError::Invalid("secret")
        );
        assert!(SigningKey::parse("whsec_abc").is_err());
        assert!(!format!("{key:?}").contains(&text[5..]));
    }

    /// The signing vector of the Standard Webhooks reference library (Go,
    /// `TestAsymmetricWebhookSign`): a 32-byte seed given as `whsk_`.
    #[test]
    fn standard_webhooks_reference_vector_signs_and_verifies() {
        let key = SigningKey::parse("whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=").unwrap();
        let (id, timestamp, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        let expected = "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==";
        assert_eq!(sign_v1a(&key, id, timestamp, body), expected);
        let ts = timestamp.to_string();
        let headers = StandardHeaders {
            id: Some(id),
            timestamp: Some(&ts),
            signature: Some(expected),
        };
        assert_eq!(
            verify_v1a(&key.public_key(), headers, body, timestamp, 300),
            Ok(())
        );
    }

    #[test]
    fn rfc_8032_signature_of_the_empty_message() {
        // The same primitive sign_v1a uses, on the RFC's message.
        let signature = rfc_key().0.sign(b"");
        assert_eq!(
            hex::encode(signature.to_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn v1a_signatures_verify_with_the_public_key_only() {
        let key = rfc_key();
        let body = br#"{"type":"user.created"}"#;
        let entry = sign_v1a(&key, "msg_1", 1_700_000_000, body);
        assert!(entry.starts_with("v1a,"));
        let header = format!("v1,bm90LWFuLWhtYWM= {entry}");
        let headers = StandardHeaders {
            id: Some("msg_1"),
            timestamp: Some("1700000000"),
            signature: Some(&header),
        };
        let public = key.public_key();
        assert_eq!(
            verify_v1a(&public, headers, body, 1_700_000_010, 300),
            Ok(())
        );
        assert_eq!(
            verify_v1a(&public, headers, b"{}", 1_700_000_010, 300),
            Err(VerifyError::SignatureMismatch)
        );
        let other = SigningKey::from_seed([7; 32]).public_key();
        assert_eq!(
            verify_v1a(&other, headers, body, 1_700_000_010, 300),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            verify_v1a(&public, headers, body, 1_700_001_000, 300),
            Err(VerifyError::TimestampOutOfTolerance {
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify_v1a("whsec_x", headers, body, 1_700_000_010, 300),
            Err(VerifyError::MalformedKey)
        );
    }
}
