//! Deliveries through an egress proxy (`WEBHOOK_PROXY`): HTTP `CONNECT`
//! or SOCKS5, with optional credentials, skipped for `WEBHOOK_NO_PROXY`.
//!
//! The address policy still holds: the client resolves the destination
//! itself, under the policy, and asks the proxy for a tunnel to the checked
//! IP address, never to a name the proxy would resolve on its own.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webhook_domain::address::Cidr;

/// The proxy's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// HTTP `CONNECT` (`http://`).
    HttpConnect,
    /// SOCKS5 (`socks5://`).
    Socks5,
}

/// An egress proxy. `Debug` and [`Proxy::redacted`] never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
    no_proxy: Vec<NoProxyRule>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Why a proxy setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidProxy {
    /// Not `http://host:port` or `socks5://host:port` (credentials optional).
    #[error(
        "'{0}' is not a proxy URL: use http://[user:password@]host:port or socks5://[user:password@]host:port"
    )]
    Url(String),
    /// A `WEBHOOK_NO_PROXY` entry that is neither a name, an address nor a CIDR block.
    #[error("'{0}' is not a host name, IP address or CIDR block")]
    NoProxy(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NoProxyRule {
    Everything,
    /// The name and its subdomains.
    Domain(String),
    Block(Cidr),
}

impl Proxy {
    /// Reads a proxy URL and a `NO_PROXY` list (comma separated: `*`, host
    /// names, which cover their subdomains, IP addresses and CIDR blocks).
    pub fn parse(url: &str, no_proxy: &str) -> Result<Self, InvalidProxy> {
        let bad = || InvalidProxy::Url(redact_url(url));
        let parsed = url::Url::parse(url).map_err(|_| bad())?;
        let kind = match parsed.scheme() {
            "http" => ProxyKind::HttpConnect,
            "socks5" | "socks5h" => ProxyKind::Socks5,
            _ => return Err(bad()),
        };
        let host = parsed
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .filter(|h| !h.is_empty())
            .ok_or_else(bad)?;
        let port = parsed
            .port_or_known_default()
            .or(match kind {
                ProxyKind::Socks5 => Some(1080),
                ProxyKind::HttpConnect => None,
            })
            .ok_or_else(bad)?;
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let credentials = (!parsed.username().is_empty()).then(|| {
            (
                decode(parsed.username()),
                decode(parsed.password().unwrap_or("")),
            )
        });
        let no_proxy = no_proxy
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(NoProxyRule::parse)
            .collect::<Result<_, _>>()?;
        Ok(Proxy {
            kind,
            host,
            port,
            credentials,
            no_proxy,
        })
    }

    /// The URL without its password, for printing the configuration.
    pub fn redacted(&self) -> String {
        let scheme = match self.kind {
            ProxyKind::HttpConnect => "http",
            ProxyKind::Socks5 => "socks5",
        };
        let user = match &self.credentials {
            Some((user, _)) => format!("{user}:***@"),
            None => String::new(),
        };
        format!("{scheme}://{user}{}:{}", self.host, self.port)
    }

    /// Whether a request to `host` (the URL's host) goes through the proxy.
    pub(crate) fn applies_to(&self, host: &str, literal: Option<IpAddr>) -> bool {
        !self.no_proxy.iter().any(|rule| rule.matches(host, literal))
    }

    /// A tunnel through the proxy to `target` (an address the policy allowed).
    pub(crate) async fn connect(&self, target: SocketAddr) -> io::Result<TcpStream> {
        // The proxy is the operator's own setting: it may sit on a private
        // address, which the destination policy does not govern.
        let mut stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        match self.kind {
            ProxyKind::HttpConnect => self.http_connect(&mut stream, target).await?,
            ProxyKind::Socks5 => self.socks5_connect(&mut stream, target).await?,
        }
        Ok(stream)
    }

    async fn http_connect(&self, stream: &mut TcpStream, target: SocketAddr) -> io::Result<()> {
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some((user, password)) = &self.credentials {
            let token = BASE64.encode(format!("{user}:{password}"));
            request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        // Read the answer's head byte by byte: nothing after it may be consumed.
        let mut head = Vec::with_capacity(128);
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 8192 {
                return Err(proxy_error("the proxy's answer to CONNECT is too long"));
            }
            let byte = stream.read_u8().await?;
            head.push(byte);
        }
        let status = head
            .split(|&b| b == b' ')
            .nth(1)
            .and_then(|code| std::str::from_utf8(code).ok())
            .and_then(|code| code.parse::<u16>().ok());
        match status {
            Some(200..=299) => Ok(()),
            Some(code) => Err(proxy_error(&format!(
                "the proxy refused the tunnel to {target} with {code}"
            ))),
            None => Err(proxy_error("the proxy's answer to CONNECT is not HTTP")),
        }
    }

    async fn socks5_connect(&self, stream: &mut TcpStream, target: SocketAddr) -> io::Result<()> {
        // RFC 1928: greeting with the methods offered (no auth, or RFC 1929 user/password).
        let method = if self.credentials.is_some() { 2 } else { 0 };
        stream.write_all(&[5, 1, method]).await?;
        let mut choice = [0u8; 2];
        stream.read_exact(&mut choice).await?;
        if choice != [5, method] {
            return Err(proxy_error(
                "the SOCKS5 proxy accepts none of the offered authentication methods",
            ));
        }
        if let Some((user, password)) = &self.credentials {
            let (user, password) = (user.as_bytes(), password.as_bytes());
            if user.len() > 255 || password.len() > 255 {
                return Err(proxy_error(
                    "SOCKS5 credentials are limited to 255 bytes each",
                ));
            }
            let mut auth = vec![1, user.len() as u8];
            auth.extend_from_slice(user);
            auth.push(password.len() as u8);
            auth.extend_from_slice(password);
            stream.write_all(&auth).await?;
            let mut answer = [0u8; 2];
            stream.read_exact(&mut answer).await?;
            if answer[1] != 0 {
                return Err(proxy_error("the SOCKS5 proxy refused the credentials"));
            }
        }
        let mut request = vec![5, 1, 0];
        match target.ip() {
            IpAddr::V4(ip) => {
                request.push(1);
                request.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                request.push(4);
                request.extend_from_slice(&ip.octets());
            }
        }
        request.extend_from_slice(&target.port().to_be_bytes());
        stream.write_all(&request).await?;
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).await?;
        if reply[1] != 0 {
            return Err(proxy_error(&format!(
                "the SOCKS5 proxy refused the connection to {target} (reply {})",
                reply[1]
            )));
        }
        // The bound address that follows: skip it.
        let rest = match reply[3] {
            1 => 4 + 2,
            4 => 16 + 2,
            3 => usize::from(stream.read_u8().await?) + 2,
            _ => return Err(proxy_error("the SOCKS5 proxy's reply is malformed")),
        };
        let mut skip = vec![0u8; rest];
        stream.read_exact(&mut skip).await?;
        Ok(())
    }
}

fn proxy_error(message: &str) -> io::Error {
    io::Error::other(message.to_string())
}

/// `scheme://user:***@host...` of a URL that may hold a password.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(unparsable)".to_string(),
    }
}

impl NoProxyRule {
    fn parse(text: &str) -> Result<Self, InvalidProxy> {
        if text == "*" {
            return Ok(NoProxyRule::Everything);
        }
        if let Ok(ip) = IpAddr::from_str(text.trim_start_matches('[').trim_end_matches(']')) {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            return Cidr::from_str(&format!("{ip}/{prefix}"))
                .map(NoProxyRule::Block)
                .map_err(|_| InvalidProxy::NoProxy(text.to_string()));
        }
        if text.contains('/') {
            return Cidr::from_str(text)
                .map(NoProxyRule::Block)
                .map_err(|_| InvalidProxy::NoProxy(text.to_string()));
        }
        let name = text.trim_start_matches("*.").trim_start_matches('.');
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return Err(InvalidProxy::NoProxy(text.to_string()));
        }
        Ok(NoProxyRule::Domain(name.to_ascii_lowercase()))
    }

    fn matches(&self, host: &str, literal: Option<IpAddr>) -> bool {
        match self {
            NoProxyRule::Everything => true,
            NoProxyRule::Block(cidr) => literal.is_some_and(|ip| cidr.contains(ip)),
            NoProxyRule::Domain(name) => {
                let host = host.to_ascii_lowercase();
                host == *name || host.ends_with(&format!(".{name}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_and_no_proxy_rules() {
        let proxy = Proxy::parse("socks5://u:p%40ss@proxy.internal:1081", "").unwrap();
        assert_eq!(proxy.kind, ProxyKind::Socks5);
        assert_eq!(proxy.credentials, Some(("u".into(), "p@ss".into())));
        assert_eq!(proxy.redacted(), "socks5://u:***@proxy.internal:1081");
        assert!(!format!("{proxy:?}").contains("p@ss"));
        let err = Proxy::parse("ftp://u:secret@x:1", "").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(Proxy::parse("http://proxy", "").is_ok());

        let proxy =
            Proxy::parse("http://proxy:3128", "example.com, 10.0.0.0/8, 192.168.1.1").unwrap();
        assert!(!proxy.applies_to("example.com", None));
        assert!(!proxy.applies_to("api.Example.com", None));
        assert!(proxy.applies_to("notexample.com", None));
        let ip = |s: &str| Some(s.parse().unwrap());
        assert!(!proxy.applies_to("10.1.2.3", ip("10.1.2.3")));
        assert!(!proxy.applies_to("192.168.1.1", ip("192.168.1.1")));
        assert!(proxy.applies_to("192.168.1.2", ip("192.168.1.2")));
        assert!(
            !Proxy::parse("http://p:1", "*")
                .unwrap()
                .applies_to("a", None)
        );
        assert!(Proxy::parse("http://p:1", "bad host!").is_err());
    }
}
