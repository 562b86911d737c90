//! A webhook's signing secret, kept out of logs and responses by construction.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Shortest accepted secret, in characters.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest accepted secret, in characters.
pub const MAX_SECRET_LEN: usize = 128;

/// Why a user-chosen secret is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSecret {
    /// Fewer than 16 characters.
    #[error(
        "secret is {len} characters long; it must have at least 16 (omit it to have one generated)"
    )]
    TooShort {
        /// Length given, in characters.
        len: usize,
    },
    /// More than 128 characters.
    #[error("secret is {len} characters long; at most 128 are allowed")]
    TooLong {
        /// Length given, in characters.
        len: usize,
    },
    /// Whitespace, control or non-ASCII characters.
    #[error("secret may contain only printable ASCII characters without spaces")]
    InvalidCharacter,
}

/// The operating system's random source failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not read random bytes from the operating system to generate a secret: {0}")]
pub struct SecretGenerationError(pub String);

/// A webhook's signing secret.
///
/// Deliberately neither `Display` nor `Serialize`, and `Debug` prints
/// `WebhookSecret(***)`, so it cannot reach a log or a response by accident;
/// use [`expose`](Self::expose) where the raw value is really needed.
#[derive(Clone)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// Accepts 16–128 printable ASCII characters without whitespace.
    pub fn parse(s: &str) -> Result<Self, InvalidSecret> {
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidSecret::InvalidCharacter);
        }
        // All ASCII from here on, so bytes == characters.
        match s.len() {
            len if len < MIN_SECRET_LEN => Err(InvalidSecret::TooShort { len }),
            len if len > MAX_SECRET_LEN => Err(InvalidSecret::TooLong { len }),
            _ => Ok(WebhookSecret(s.to_owned())),
        }
    }

    /// A new `whsec_` secret of 32 bytes from the OS CSPRNG, in standard base64.
    pub fn generate() -> Result<Self, SecretGenerationError> {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).map_err(|err| SecretGenerationError(err.to_string()))?;
        let mut secret = String::with_capacity(6 + 44);
        secret.push_str(webhook_verify::STANDARD_SECRET_PREFIX);
        BASE64.encode_string(bytes, &mut secret);
        Ok(WebhookSecret(secret))
    }

    /// The raw secret, for signing and for showing once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A masked form safe to display, such as `whsec_Mf…aSw`: at most the
    /// first 8 and last 3 characters, and never more than a third of the secret.
    pub fn preview(&self) -> String {
        let len = self.0.len();
        let budget = len / 3;
        let tail = (budget / 4).min(3);
        let head = (budget - tail).min(8);
        // The secret is ASCII (checked by `parse`, base64 in `generate`), so
        // these byte offsets are character boundaries.
        let start = self.0.get(..head).unwrap_or("");
        let end = self.0.get(len - tail..).unwrap_or("");
        format!("{start}…{end}")
    }
}

impl PartialEq for WebhookSecret {
    /// Constant-time, so comparing secrets leaks nothing through timing.
    fn eq(&self, other: &Self) -> bool {
        webhook_verify::constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for WebhookSecret {}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked() {
        assert!(WebhookSecret::parse("your_webhook_secret").is_ok());
        assert_eq!(
            WebhookSecret::parse("short"),
            Err(InvalidSecret::TooShort { len: 5 })
        );
        assert_eq!(
            WebhookSecret::parse(&"x".repeat(129)),
            Err(InvalidSecret::TooLong { len: 129 })
        );
        assert_eq!(
            WebhookSecret::parse("has a space in it!"),
            Err(InvalidSecret::InvalidCharacter)
        );
        assert_eq!(
            WebhookSecret::parse("nön-ascii-secret-value"),
            Err(InvalidSecret::InvalidCharacter)
        );
        assert!(
            InvalidSecret::TooShort { len: 5 }
                .to_string()
                .contains("at least 16")
        );
    }

    #[test]
    fn generated_secrets_are_standard_webhooks_secrets() {
        let secret = WebhookSecret::generate().unwrap();
        let text = secret.expose();
        assert!(text.starts_with("whsec_"));
        assert_eq!(webhook_verify::standard_key(text).len(), 32);
        assert!(WebhookSecret::parse(text).is_ok());
        assert_ne!(secret, WebhookSecret::generate().unwrap());
        assert_eq!(secret, secret.clone());
    }

    #[test]
    fn secrets_never_leak_through_debug_or_preview() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{secret:?}"), "WebhookSecret(***)");
        assert_eq!(secret.preview(), "whsec_Mf…aSw");
        for len in MIN_SECRET_LEN..=MAX_SECRET_LEN {
            let secret = WebhookSecret::parse(&"k".repeat(len)).unwrap();
            let visible = secret.preview().chars().filter(|&c| c == 'k').count();
            assert!(visible * 3 <= len, "{len}: {}", secret.preview());
            assert!(visible <= 11);
        }
    }
}
