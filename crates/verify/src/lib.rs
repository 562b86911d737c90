//! Signing and verification of Smart AI Hub webhook deliveries.
//!
//! Two schemes are sent on every delivery:
//!
//! * the guide's `X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret, body)>`,
//!   keyed with the secret's UTF-8 bytes;
//! * [Standard Webhooks](https://www.standardwebhooks.com) `webhook-id`,
//!   `webhook-timestamp` and `webhook-signature: v1,<base64>` over
//!   `{id}.{timestamp}.{body}`, keyed with the base64-decoded part of a
//!   `whsec_` secret (or the secret's bytes for any other secret).
//!
//! Standard Webhooks' asymmetric `v1a` (Ed25519, `whsk_` / `whpk_` keys) is
//! in [`asymmetric`]: a receiver verifies it with a public key only.
//!
//! The sender (the webhook service) and receivers share this one
//! implementation, so what is signed and what is checked cannot drift apart.
//! Every comparison is constant-time.

pub mod asymmetric;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of the guide's signature header value.
pub const LEGACY_PREFIX: &str = "sha256=";
/// Prefix of secrets in the Standard Webhooks format.
pub const STANDARD_SECRET_PREFIX: &str = "whsec_";
/// Default tolerance between a delivery's timestamp and the receiver's clock.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Why a delivery failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs was not sent.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// A header was present but not in the scheme's format.
    #[error("the {0} header is malformed")]
    MalformedHeader(&'static str),
    /// The timestamp is further from now than the tolerance allows.
    #[error("the webhook timestamp is outside the {tolerance_secs} s tolerance")]
    TimestampOutOfTolerance {
        /// The tolerance that was applied, in seconds.
        tolerance_secs: u64,
    },
    /// No signature matched the body.
    #[error("no signature matches the payload")]
    SignatureMismatch,
    /// The key given to verify with is not a key of the scheme.
    #[error("the verification key is malformed")]
    MalformedKey,
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of every length"),
    }
}

/// HMAC-SHA256 of `parts` concatenated, keyed with `key`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = mac(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The guide's `X-Webhook-Signature` value: `sha256=` + lowercase hex of
/// HMAC-SHA256 keyed with the secret's UTF-8 bytes over the exact body bytes.
pub fn sign_legacy(secret: &str, body: &[u8]) -> String {
    let digest = hmac_sha256(secret.as_bytes(), &[body]);
    let mut out = String::with_capacity(LEGACY_PREFIX.len() + 64);
    out.push_str(LEGACY_PREFIX);
    out.push_str(&hex::encode(digest));
    out
}

/// Checks an `X-Webhook-Signature` header value against the body, in constant time.
pub fn verify_legacy(secret: &str, body: &[u8], header: Option<&str>) -> Result<(), VerifyError> {
    const HEADER: &str = "X-Webhook-Signature";
    let header = header.ok_or(VerifyError::MissingHeader(HEADER))?;
    let hex_sig = header
        .trim()
        .strip_prefix(LEGACY_PREFIX)
        .ok_or(VerifyError::MalformedHeader(HEADER))?;
    let given = hex::decode(hex_sig).map_err(|_| VerifyError::MalformedHeader(HEADER))?;
    let expected = hmac_sha256(secret.as_bytes(), &[body]);
    if bool::from(expected.as_slice().ct_eq(given.as_slice())) {
        Ok(())
    } else {
        Err(VerifyError::SignatureMismatch)
    }
}

/// The HMAC key of the Standard Webhooks scheme for a secret: the decoded
/// base64 after `whsec_`, or the secret's own bytes when it is not in that form.
pub fn standard_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(STANDARD_SECRET_PREFIX)
        .and_then(|b64| BASE64.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// One `v1,<base64>` entry of the `webhook-signature` header.
pub fn sign_standard(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let digest = hmac_sha256(key, &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    let mut out = String::with_capacity(3 + 44);
    out.push_str("v1,");
    BASE64.encode_string(digest, &mut out);
    out
}

/// The Standard Webhooks headers of one delivery, as a receiver reads them.
#[derive(Debug, Clone, Copy)]
pub struct StandardHeaders<'a> {
    /// `webhook-id`
    pub id: Option<&'a str>,
    /// `webhook-timestamp` (unix seconds)
    pub timestamp: Option<&'a str>,
    /// `webhook-signature` (space-separated `v1,<base64>` entries)
    pub signature: Option<&'a str>,
}

/// Checks Standard Webhooks headers: the timestamp must be within
/// `tolerance_secs` of `now_unix`, and one `v1` entry must match.
pub fn verify_standard(
    secret: &str,
    headers: StandardHeaders<'_>,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
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
    let key = standard_key(secret);
    let expected = hmac_sha256(
        &key,
        &[id.as_bytes(), b".", ts_text.trim().as_bytes(), b".", body],
    );
    let mut matched = false;
    for entry in signatures.split_whitespace() {
        let Some(b64) = entry.strip_prefix("v1,") else {
            continue;
        };
        if let Ok(given) = BASE64.decode(b64) {
            // Keep checking every entry so timing does not reveal which one matched.
            matched |= bool::from(expected.as_slice().ct_eq(given.as_slice()));
        }
    }
    if matched {
        Ok(())
    } else {
        Err(VerifyError::SignatureMismatch)
    }
}

/// Constant-time equality of two byte strings (for shared secrets and tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_BODY: &str = r#"{"id":"evt_1","eventType":"user.created","userId":"u1","data":{"userId":"u1"},"metadata":{"service":"auth-service","timestamp":"2025-01-01T00:00:00.000Z"}}"#;

    #[test]
    fn legacy_vector_from_the_spec() {
        let sig = sign_legacy("your_webhook_secret", VECTOR_BODY.as_bytes());
        assert_eq!(
            sig,
            "sha256=c33e21c9201c59d4052d39da193e87ff7df983b2f8c88a7056c34456546d52e5"
        );
        assert_eq!(
            verify_legacy("your_webhook_secret", VECTOR_BODY.as_bytes(), Some(&sig)),
            Ok(())
        );
    }

    #[test]
    fn legacy_rejects_tampering_and_bad_headers() {
        let sig = sign_legacy("your_webhook_secret", VECTOR_BODY.as_bytes());
        let tampered = VECTOR_BODY.replace("u1", "u2");
        assert_eq!(
            verify_legacy("your_webhook_secret", tampered.as_bytes(), Some(&sig)),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            verify_legacy("other_secret_value", VECTOR_BODY.as_bytes(), Some(&sig)),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            verify_legacy("s", b"x", None),
            Err(VerifyError::MissingHeader("X-Webhook-Signature"))
        );
        assert_eq!(
            verify_legacy("s", b"x", Some("md5=abc")),
            Err(VerifyError::MalformedHeader("X-Webhook-Signature"))
        );
        assert_eq!(
            verify_legacy("s", b"x", Some("sha256=zz")),
            Err(VerifyError::MalformedHeader("X-Webhook-Signature"))
        );
    }

    #[test]
    fn standard_vectors_from_the_spec() {
        let cases = [
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330_i64,
                r#"{"test": 2432232314}"#,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
            (
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                r#"{"email":"test@example.com","username":"test_user"}"#,
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ),
        ];
        for (secret, id, ts, body, expected) in cases {
            let sig = sign_standard(&standard_key(secret), id, ts, body.as_bytes());
            assert_eq!(sig, expected);
            let ts_text = ts.to_string();
            let headers = StandardHeaders {
                id: Some(id),
                timestamp: Some(&ts_text),
                signature: Some(expected),
            };
            assert_eq!(
                verify_standard(secret, headers, body.as_bytes(), ts + 10, 300),
                Ok(())
            );
        }
    }

    #[test]
    fn standard_accepts_any_matching_entry_and_enforces_tolerance() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"a":1}"#;
        let good = sign_standard(&standard_key(secret), "msg_1", 1000, body);
        let other = sign_standard(
            &standard_key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
            "msg_1",
            1000,
            body,
        );
        let both = format!("{other} {good}");
        let headers = StandardHeaders {
            id: Some("msg_1"),
            timestamp: Some("1000"),
            signature: Some(&both),
        };
        assert_eq!(verify_standard(secret, headers, body, 1000, 300), Ok(()));
        assert_eq!(
            verify_standard(secret, headers, body, 1301, 300),
            Err(VerifyError::TimestampOutOfTolerance {
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify_standard(secret, headers, body, 699, 300),
            Err(VerifyError::TimestampOutOfTolerance {
                tolerance_secs: 300
            })
        );
        let only_other = StandardHeaders {
            signature: Some(&other),
            ..headers
        };
        assert_eq!(
            verify_standard(secret, only_other, body, 1000, 300),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn non_whsec_secret_keys_with_its_bytes() {
        assert_eq!(
            standard_key("plain-secret-value"),
            b"plain-secret-value".to_vec()
        );
        assert_eq!(standard_key("whsec_AAAA"), vec![0, 0, 0]);
    }
}
