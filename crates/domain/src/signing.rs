//! The signature headers of one delivery.
//!
//! Each delivery carries both schemes (see `webhook_verify`): the guide's
//! `X-Webhook-Signature`, which receivers written from the guide check, and
//! Standard Webhooks' `webhook-signature`, which can list several signatures
//! so that receivers keep verifying while a secret is being rotated.

use crate::webhook::WebhookSecret;

/// Signature header values for one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `X-Webhook-Signature`: `sha256=<hex>` with the current secret only.
    pub legacy: String,
    /// `webhook-signature`: space-separated `v1,<base64>` entries, the
    /// current secret's first, then one per previous secret still in its grace period.
    pub standard: String,
}

/// Signs `body` for delivery.
///
/// `previous` holds the secrets that are still valid during a rotation; the
/// caller decides which are (the domain has no clock). `msg_id` and
/// `timestamp_secs` must be the values sent as `webhook-id` and
/// `webhook-timestamp`.
pub fn sign_delivery(
    current: &WebhookSecret,
    previous: &[&WebhookSecret],
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> SignatureHeaders {
    let legacy = webhook_verify::sign_legacy(current.expose(), body);
    // Each entry is "v1," + 44 base64 characters, plus a separating space.
    let mut standard = String::with_capacity(48 * (1 + previous.len()));
    for secret in std::iter::once(current).chain(previous.iter().copied()) {
        if !standard.is_empty() {
            standard.push(' ');
        }
        let key = webhook_verify::standard_key(secret.expose());
        standard.push_str(&webhook_verify::sign_standard(
            &key,
            msg_id,
            timestamp_secs,
            body,
        ));
    }
    SignatureHeaders { legacy, standard }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webhook_verify::{StandardHeaders, verify_legacy, verify_standard};

    fn secret(s: &str) -> WebhookSecret {
        WebhookSecret::parse(s).unwrap()
    }

    #[test]
    fn legacy_vector() {
        let body = br#"{"id":"evt_1","eventType":"user.created","userId":"u1","data":{"userId":"u1"},"metadata":{"service":"auth-service","timestamp":"2025-01-01T00:00:00.000Z"}}"#;
        let headers = sign_delivery(&secret("your_webhook_secret"), &[], "evt_1", 0, body);
        assert_eq!(
            headers.legacy,
            "sha256=c33e21c9201c59d4052d39da193e87ff7df983b2f8c88a7056c34456546d52e5"
        );
    }

    #[test]
    fn standard_webhooks_vectors() {
        let one = sign_delivery(
            &secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            &[],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            one.standard,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let two = sign_delivery(
            &secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
            &[],
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(
            two.standard,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn rotation_lists_current_then_previous_and_both_verify() {
        let new = secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        let old = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let ts = 1_614_265_330;
        let headers = sign_delivery(&new, &[&old], "msg_p5jXN8AQM9LWM0D4loKWxJek", ts, body);
        let entries: Vec<_> = headers.standard.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[1],
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        for s in [&new, &old] {
            let received = StandardHeaders {
                id: Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
                timestamp: Some("1614265330"),
                signature: Some(&headers.standard),
            };
            assert_eq!(verify_standard(s.expose(), received, body, ts, 300), Ok(()));
        }
        assert!(verify_legacy(new.expose(), body, Some(&headers.legacy)).is_ok());
        assert!(verify_legacy(old.expose(), body, Some(&headers.legacy)).is_err());
    }
}
