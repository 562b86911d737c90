//! The parts of a webhook registration that need checking: its URL, secret
//! and description.
//!
//! [`WebhookUrl`] refuses, at registration, every destination that can be
//! judged without DNS (IP literals, `localhost`, plain `http`); names are
//! resolved and checked again by the service, at registration and at connect
//! time, because DNS answers can change.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::{Host, Url};

use crate::address::{AddressPolicy, BlockedAddress};

mod secret;

pub use secret::{
    InvalidSecret, MAX_SECRET_LEN, MIN_SECRET_LEN, SecretGenerationError, WebhookSecret,
};

/// Longest accepted webhook URL, in characters.
pub const MAX_URL_LEN: usize = 2048;
/// Longest label of a host name (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest host name, without a trailing dot (RFC 1035).
pub const MAX_HOST_LEN: usize = 253;

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUrl {
    /// Nothing was given.
    #[error("url is required")]
    Empty,
    /// Longer than [`MAX_URL_LEN`].
    #[error("url is {len} characters long; at most 2048 are allowed")]
    TooLong {
        /// Length of the given URL in characters.
        len: usize,
    },
    /// Not an absolute URL.
    #[error(
        "url is not a valid absolute URL ({reason}); expected e.g. https://example.com/webhooks"
    )]
    Malformed {
        /// What the URL parser reported.
        reason: String,
    },
    /// A scheme other than http or https.
    #[error("url must be an http or https URL, not '{scheme}:'")]
    UnsupportedScheme {
        /// The scheme given.
        scheme: String,
    },
    /// Contains `user:password@`.
    #[error(
        "url must not contain a user name or password; receivers authenticate deliveries by their signature"
    )]
    UserInfo,
    /// Contains `#fragment`, which is never sent to the server.
    #[error("url must not contain a fragment ('#...'), which is never sent to the receiver")]
    Fragment,
    /// No host (or an empty one).
    #[error("url must name a host")]
    MissingHost,
    /// A control character (line breaks included) anywhere in the URL: the
    /// URL parser would drop or escape it and store a different URL.
    #[error("url contains the control character U+{code:04X} at character {position}")]
    ControlCharacter {
        /// The character's code point.
        code: u32,
        /// Its position in the URL, counting from 1.
        position: usize,
    },
    /// A space (or other white space) inside the URL; it must be percent-encoded.
    #[error(
        "url contains white space at character {position}; encode spaces in a path or query as %20"
    )]
    Whitespace {
        /// Its position in the URL, counting from 1.
        position: usize,
    },
    /// A backslash, which the URL parser reads as a slash.
    #[error("url contains a backslash at character {position}; use '/' to separate path segments")]
    Backslash {
        /// Its position in the URL, counting from 1.
        position: usize,
    },
    /// The scheme is not followed by `//`, as in `https:example.com`.
    #[error("url must have '//' after '{scheme}:', as in {scheme}://example.com/webhooks")]
    MissingAuthority {
        /// The scheme given.
        scheme: String,
    },
    /// Nothing between `//` and the path, as in `https:///x`.
    #[error("url has an empty host between '//' and the path")]
    EmptyAuthority,
    /// A host name with an empty label, as in `a..example.com`.
    #[error("url host '{host}' has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel {
        /// The host name.
        host: String,
    },
    /// A host name label longer than DNS allows.
    #[error(
        "url host has a label of {len} characters; DNS allows at most {MAX_LABEL_LEN} per label"
    )]
    LabelTooLong {
        /// Length of the longest label.
        len: usize,
    },
    /// A host name longer than DNS allows.
    #[error("url host is {len} characters long; DNS allows at most {MAX_HOST_LEN}")]
    HostTooLong {
        /// Length of the host name.
        len: usize,
    },
    /// Port 0 cannot be connected to.
    #[error("url port 0 is not a valid destination port")]
    InvalidPort,
    /// Plain http where it is not allowed.
    #[error("url must use https (http is allowed only in --dev or for allow-listed destinations)")]
    InsecureScheme,
    /// `localhost` while loopback is not allow-listed.
    #[error(
        "url points to localhost, which is a loopback address and is not in WEBHOOK_ALLOWED_CIDRS"
    )]
    Localhost,
    /// An IP literal the address policy refuses.
    #[error("url points to {}, which is {} and is not in WEBHOOK_ALLOWED_CIDRS", .0.ip, .0.class.describe())]
    BlockedAddress(BlockedAddress),
}

/// The host of a webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// An IP literal (already checked against the address policy).
    Ip(IpAddr),
    /// A domain name (lowercase, IDNA-encoded), to be resolved and checked.
    Domain(String),
}

/// A webhook destination that passed every check possible without DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    url: Url,
    host: HostKind,
    requires_allow_listed_resolution: bool,
}

impl WebhookUrl {
    /// Parses and checks a destination URL.
    ///
    /// Accepts absolute http(s) URLs of at most 2048 characters with a host,
    /// without user info or fragment. IP literals (including the decimal,
    /// octal and hex IPv4 forms the URL standard normalises) must pass
    /// `policy`. Plain http needs `allow_insecure_http` or an allow-listed IP
    /// literal; for an http domain name without `allow_insecure_http` the
    /// result has [`requires_allow_listed_resolution`](Self::requires_allow_listed_resolution)
    /// set, and the service must check that every resolved address is allow-listed.
    pub fn parse(
        s: &str,
        policy: &AddressPolicy,
        allow_insecure_http: bool,
    ) -> Result<WebhookUrl, InvalidUrl> {
        let s = s.trim();
        if s.is_empty() {
            return Err(InvalidUrl::Empty);
        }
        let len = s.chars().count();
        if len > MAX_URL_LEN {
            return Err(InvalidUrl::TooLong { len });
        }
        let url = Url::parse(s).map_err(|err| InvalidUrl::Malformed {
            reason: err.to_string(),
        })?;
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(InvalidUrl::UnsupportedScheme {
                    scheme: other.to_owned(),
                });
            }
        };
        // The parser accepted it, but perhaps only by repairing it.
        check_raw(s)?;
        // Normalisation (punycode, percent-encoding) can lengthen the URL.
        let len = url.as_str().chars().count();
        if len > MAX_URL_LEN {
            return Err(InvalidUrl::TooLong { len });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(InvalidUrl::UserInfo);
        }
        if url.fragment().is_some() {
            return Err(InvalidUrl::Fragment);
        }
        if url.port() == Some(0) {
            return Err(InvalidUrl::InvalidPort);
        }
        let host = match url.host() {
            Some(Host::Ipv4(v4)) => HostKind::Ip(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => HostKind::Ip(IpAddr::V6(v6)),
            Some(Host::Domain(name)) if !name.is_empty() => {
                check_domain(name)?;
                HostKind::Domain(name.to_owned())
            }
            _ => return Err(InvalidUrl::MissingHost),
        };
        let requires_allow_listed_resolution = match &host {
            HostKind::Ip(ip) => {
                policy.check(*ip).map_err(InvalidUrl::BlockedAddress)?;
                if !https && !allow_insecure_http && !policy.is_allow_listed(*ip) {
                    return Err(InvalidUrl::InsecureScheme);
                }
                false
            }
            HostKind::Domain(name) => {
                if is_localhost(name) && !policy.is_allow_listed(IpAddr::V4(Ipv4Addr::LOCALHOST)) {
                    return Err(InvalidUrl::Localhost);
                }
                !https && !allow_insecure_http
            }
        };
        Ok(WebhookUrl {
            url,
            host,
            requires_allow_listed_resolution,
        })
    }

    /// The normalised URL text.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The parsed URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The host: an IP literal or a domain name.
    pub fn host_kind(&self) -> HostKind {
        self.host.clone()
    }

    /// The explicit port, or 443 for https and 80 for http.
    pub fn port_or_default(&self) -> u16 {
        self.url
            .port_or_known_default()
            .unwrap_or(if self.is_https() { 443 } else { 80 })
    }

    /// Whether deliveries use TLS.
    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }

    /// Whether this is a plain-http domain URL accepted only on condition that
    /// every address its name resolves to is allow-listed.
    pub fn requires_allow_listed_resolution(&self) -> bool {
        self.requires_allow_listed_resolution
    }
}

/// Checks the URL as written, not as the URL parser normalised it: the
/// parser silently drops tabs and line breaks, percent-encodes spaces, reads
/// `\` as `/` and repairs a missing or empty authority (`https:example.com`,
/// `https:///x`), so what it stores would not be what the user typed.
fn check_raw(s: &str) -> Result<(), InvalidUrl> {
    for (index, c) in s.chars().enumerate() {
        let position = index + 1;
        if c.is_control() {
            return Err(InvalidUrl::ControlCharacter {
                code: u32::from(c),
                position,
            });
        }
        if c.is_whitespace() {
            return Err(InvalidUrl::Whitespace { position });
        }
        if c == '\\' {
            return Err(InvalidUrl::Backslash { position });
        }
    }
    // A scheme is ASCII letters, digits, '+', '-' and '.'; anything else
    // before the first ':' means there is no scheme, which the parser reports.
    let Some((scheme, rest)) = s.split_once(':') else {
        return Ok(());
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Ok(());
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        // Refused as an unsupported scheme, with that message.
        return Ok(());
    }
    let Some(after) = rest.strip_prefix("//") else {
        return Err(InvalidUrl::MissingAuthority { scheme });
    };
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(InvalidUrl::EmptyAuthority);
    }
    Ok(())
}

/// A domain name DNS can hold: labels of 1 to 63 characters, at most 253 in
/// all (after IDNA encoding, which is what is looked up).
fn check_domain(name: &str) -> Result<(), InvalidUrl> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if let Some(len) = name
        .split('.')
        .map(str::len)
        .filter(|&len| len > MAX_LABEL_LEN)
        .max()
    {
        return Err(InvalidUrl::LabelTooLong { len });
    }
    let len = name.len();
    if len > MAX_HOST_LEN {
        return Err(InvalidUrl::HostTooLong { len });
    }
    if name.split('.').any(str::is_empty) {
        return Err(InvalidUrl::EmptyLabel {
            host: name.to_owned(),
        });
    }
    Ok(())
}

/// `localhost`, `*.localhost` (RFC 6761), with or without a trailing dot.
fn is_localhost(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name == "localhost" || name.ends_with(".localhost")
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for WebhookUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Longest accepted description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 500;

/// Why a description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDescription {
    /// Longer than allowed.
    #[error("description is {len} characters long; at most 500 are allowed")]
    TooLong {
        /// Length given, in characters.
        len: usize,
    },
    /// A control character other than tab, line feed or carriage return.
    #[error(
        "description contains the control character U+{code:04X}; only tab and line breaks are allowed"
    )]
    ControlCharacter {
        /// The character's code point.
        code: u32,
    },
}

/// A free-text note on a webhook: at most 500 characters, no control
/// characters but tab and line breaks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Description(String);

impl Description {
    /// Accepts up to 500 characters (not bytes). Control characters other
    /// than tab and line breaks are refused: they are never meant in a note,
    /// and PostgreSQL cannot store a NUL in text at all (the same note must
    /// be accepted or refused alike on every store).
    pub fn parse(s: &str) -> Result<Self, InvalidDescription> {
        let len = s.chars().count();
        if len > MAX_DESCRIPTION_LEN {
            return Err(InvalidDescription::TooLong { len });
        }
        if let Some(c) = s
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(InvalidDescription::ControlCharacter { code: u32::from(c) });
        }
        Ok(Description(s.to_owned()))
    }

    /// The description text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The description as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Description {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Description {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{AddressClass, Cidr};

    fn strict() -> AddressPolicy {
        AddressPolicy::default()
    }

    fn dev() -> AddressPolicy {
        AddressPolicy::new(vec![], true)
    }

    fn parse(s: &str) -> Result<WebhookUrl, InvalidUrl> {
        WebhookUrl::parse(s, &strict(), false)
    }

    #[test]
    fn accepts_public_https() {
        let url = parse("https://smartaihub.com/webhooks/smartaihub").unwrap();
        assert_eq!(url.as_str(), "https://smartaihub.com/webhooks/smartaihub");
        assert_eq!(url.host_kind(), HostKind::Domain("smartaihub.com".into()));
        assert_eq!(url.port_or_default(), 443);
        assert!(url.is_https());
        assert!(!url.requires_allow_listed_resolution());
        let url = parse("https://8.8.8.8:8443/hook?x=1").unwrap();
        assert_eq!(url.host_kind(), HostKind::Ip("8.8.8.8".parse().unwrap()));
        assert_eq!(url.port_or_default(), 8443);
        assert_eq!(url.url().query(), Some("x=1"));
        assert_eq!(
            serde_json::to_string(&url).unwrap(),
            "\"https://8.8.8.8:8443/hook?x=1\""
        );
    }

    #[test]
    fn rejects_malformed_and_unsupported() {
        assert_eq!(parse(""), Err(InvalidUrl::Empty));
        assert!(matches!(
            parse("/relative"),
            Err(InvalidUrl::Malformed { .. })
        ));
        assert!(matches!(
            parse("ftp://example.com/"),
            Err(InvalidUrl::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            parse("javascript:alert(1)"),
            Err(InvalidUrl::UnsupportedScheme { .. })
        ));
        assert_eq!(
            parse("https://user:pw@example.com/"),
            Err(InvalidUrl::UserInfo)
        );
        assert_eq!(
            parse("https://user@example.com/"),
            Err(InvalidUrl::UserInfo)
        );
        assert_eq!(
            parse("https://example.com/#frag"),
            Err(InvalidUrl::Fragment)
        );
        assert_eq!(
            parse("https://example.com:0/"),
            Err(InvalidUrl::InvalidPort)
        );
        let long = format!("https://example.com/{}", "a".repeat(2030));
        assert!(matches!(parse(&long), Err(InvalidUrl::TooLong { .. })));
        let ok = format!("https://example.com/{}", "a".repeat(2048 - 20));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn refuses_what_the_parser_would_normalise() {
        assert_eq!(
            parse("https://example.com/\r\nX-Injected: 1"),
            Err(InvalidUrl::ControlCharacter {
                code: 0x0D,
                position: 21
            })
        );
        assert_eq!(
            parse("https://example.com/a\tb"),
            Err(InvalidUrl::ControlCharacter {
                code: 0x09,
                position: 22
            })
        );
        assert_eq!(
            parse("https://example.com/a b"),
            Err(InvalidUrl::Whitespace { position: 22 })
        );
        assert_eq!(
            parse("https://example.com/a\u{a0}b"),
            Err(InvalidUrl::Whitespace { position: 22 })
        );
        assert_eq!(
            parse("https://example.com\\hook"),
            Err(InvalidUrl::Backslash { position: 20 })
        );
        assert_eq!(parse("https:///x"), Err(InvalidUrl::EmptyAuthority));
        assert_eq!(
            parse("https:example.com"),
            Err(InvalidUrl::MissingAuthority {
                scheme: "https".into()
            })
        );
        assert_eq!(
            parse("HTTPS:/example.com/"),
            Err(InvalidUrl::MissingAuthority {
                scheme: "https".into()
            })
        );
        let err = parse("https:example.com").unwrap_err();
        assert_eq!(
            err.to_string(),
            "url must have '//' after 'https:', as in https://example.com/webhooks"
        );
        // Surrounding white space is trimmed, as before.
        assert!(parse("  https://example.com/hook \n").is_ok());
        // What the parser cannot read at all is reported as such.
        assert!(matches!(
            parse("not a url"),
            Err(InvalidUrl::Malformed { .. })
        ));
        assert!(matches!(
            parse("ftp://example.com/a b"),
            Err(InvalidUrl::UnsupportedScheme { .. })
        ));
    }

    #[test]
    fn host_names_must_fit_dns() {
        let label = "a".repeat(300);
        assert_eq!(
            parse(&format!("https://{label}.example.com/")),
            Err(InvalidUrl::LabelTooLong { len: 300 })
        );
        assert_eq!(
            InvalidUrl::LabelTooLong { len: 300 }.to_string(),
            "url host has a label of 300 characters; DNS allows at most 63 per label"
        );
        let ok = "a".repeat(63);
        assert!(parse(&format!("https://{ok}.example.com/")).is_ok());
        assert_eq!(
            parse(&format!("https://{}a.example.com/", ok)),
            Err(InvalidUrl::LabelTooLong { len: 64 })
        );
        let long = vec!["a".repeat(60); 5].join(".");
        assert_eq!(
            parse(&format!("https://{long}/")),
            Err(InvalidUrl::HostTooLong { len: 304 })
        );
        assert!(matches!(
            parse("https://a..example.com/"),
            Err(InvalidUrl::EmptyLabel { .. })
        ));
        // A fully qualified name keeps its trailing dot.
        assert!(parse("https://example.com./hook").is_ok());
    }

    #[test]
    fn http_needs_dev_or_allow_listing() {
        let err = parse("http://example.com/hook");
        assert!(err.as_ref().unwrap().requires_allow_listed_resolution());
        let url = WebhookUrl::parse("http://example.com/hook", &strict(), true).unwrap();
        assert!(!url.requires_allow_listed_resolution());
        assert_eq!(url.port_or_default(), 80);
        assert_eq!(parse("http://8.8.8.8/"), Err(InvalidUrl::InsecureScheme));
        assert_eq!(
            InvalidUrl::InsecureScheme.to_string(),
            "url must use https (http is allowed only in --dev or for allow-listed destinations)"
        );
        let listed = AddressPolicy::new(vec!["10.0.0.0/8".parse::<Cidr>().unwrap()], false);
        let url = WebhookUrl::parse("http://10.1.2.3:8080/", &listed, false).unwrap();
        assert!(!url.requires_allow_listed_resolution());
    }

    #[test]
    fn blocks_internal_ip_literals_in_every_spelling() {
        for s in [
            "https://127.0.0.1/",
            "https://2130706433/",
            "https://0177.0.0.1/",
            "https://0x7f.0.0.1/",
            "https://0x7f000001/",
            "https://127.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
        ] {
            match parse(s) {
                Err(InvalidUrl::BlockedAddress(blocked)) => {
                    assert_eq!(blocked.class, AddressClass::Loopback, "{s}")
                }
                other => panic!("{s}: {other:?}"),
            }
        }
        let err = parse("http://2130706433/").unwrap_err();
        assert_eq!(
            err.to_string(),
            "url points to 127.0.0.1, which is a loopback address and is not in WEBHOOK_ALLOWED_CIDRS"
        );
        for s in [
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/",
            "https://0.0.0.0/",
        ] {
            assert!(
                matches!(parse(s), Err(InvalidUrl::BlockedAddress(_))),
                "{s}"
            );
        }
    }

    #[test]
    fn localhost_needs_loopback_allowed() {
        for s in [
            "https://localhost/",
            "https://LOCALHOST./x",
            "https://api.localhost:3000/",
        ] {
            assert_eq!(parse(s), Err(InvalidUrl::Localhost), "{s}");
        }
        let url =
            WebhookUrl::parse("http://localhost:3000/webhooks/smartaihub", &dev(), true).unwrap();
        assert_eq!(url.host_kind(), HostKind::Domain("localhost".into()));
        assert_eq!(url.port_or_default(), 3000);
        let url = WebhookUrl::parse("http://127.0.0.1:3000/", &dev(), false).unwrap();
        assert!(!url.is_https());
        assert!(parse("https://notlocalhost.com/").is_ok());
    }

    #[test]
    fn descriptions_count_characters() {
        assert!(Description::parse(&"é".repeat(500)).is_ok());
        let err = Description::parse(&"é".repeat(501)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "description is 501 characters long; at most 500 are allowed"
        );
        let err = Description::parse("a\0b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "description contains the control character U+0000; only tab and line breaks are allowed"
        );
        assert!(Description::parse("line one\r\nline\ttwo").is_ok());
        let d = Description::parse("Production hook").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"Production hook\"");
        assert_eq!(d.as_str(), "Production hook");
    }
}
