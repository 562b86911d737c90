//! Local egress proxies (HTTP `CONNECT` and SOCKS5) that tunnel to
//! loopback receivers and record what they were asked to reach.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The protocol a [`TestProxy`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// HTTP `CONNECT`, credentials in `Proxy-Authorization: Basic`.
    HttpConnect,
    /// SOCKS5, credentials by RFC 1929.
    Socks5,
}

/// A proxy on `127.0.0.1` (ephemeral port). Tunnels only to loopback
/// addresses; with credentials set, refuses clients without them.
pub struct TestProxy {
    addr: SocketAddr,
    protocol: ProxyProtocol,
    targets: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl TestProxy {
    /// Starts the proxy; `credentials` are demanded when given.
    pub async fn start(
        protocol: ProxyProtocol,
        credentials: Option<(&str, &str)>,
    ) -> io::Result<TestProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        let credentials = credentials.map(|(u, p)| (u.to_string(), p.to_string()));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (seen, credentials) = (seen.clone(), credentials.clone());
                tokio::spawn(async move {
                    let _ = tunnel(protocol, client, credentials, seen).await;
                });
            }
        });
        Ok(TestProxy {
            addr,
            protocol,
            targets,
            task,
        })
    }

    /// `http://[user:password@]127.0.0.1:port` or `socks5://...`.
    pub fn url(&self, credentials: Option<(&str, &str)>) -> String {
        let scheme = match self.protocol {
            ProxyProtocol::HttpConnect => "http",
            ProxyProtocol::Socks5 => "socks5",
        };
        let user = credentials.map_or_else(String::new, |(u, p)| format!("{u}:{p}@"));
        format!("{scheme}://{user}{}", self.addr)
    }

    /// The targets of the tunnels opened, as `ip:port`, in order.
    pub fn targets(&self) -> Vec<String> {
        self.targets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tunnel(
    protocol: ProxyProtocol,
    mut client: TcpStream,
    credentials: Option<(String, String)>,
    seen: Arc<Mutex<Vec<String>>>,
) -> io::Result<()> {
    let target = match protocol {
        ProxyProtocol::HttpConnect => http_connect(&mut client, credentials.as_ref()).await?,
        ProxyProtocol::Socks5 => socks5(&mut client, credentials.as_ref()).await?,
    };
    let Some(target) = target else {
        return Ok(());
    };
    if !target.ip().is_loopback() {
        return Ok(()); // traffic stays on loopback
    }
    let mut upstream = TcpStream::connect(target).await?;
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(target.to_string());
    match protocol {
        ProxyProtocol::HttpConnect => {
            client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await?;
        }
        ProxyProtocol::Socks5 => {
            client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        }
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

async fn http_connect(
    client: &mut TcpStream,
    credentials: Option<&(String, String)>,
) -> io::Result<Option<SocketAddr>> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(client.read_u8().await?);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target: Option<SocketAddr> = head
        .strip_prefix("CONNECT ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|t| t.parse().ok());
    if let Some((user, password)) = credentials {
        use base64::Engine as _;
        let expected = format!(
            "proxy-authorization: basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        if !head
            .to_ascii_lowercase()
            .contains(&expected.to_ascii_lowercase())
        {
            client
                .write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n",
                )
                .await?;
            return Ok(None);
        }
    }
    if target.is_none() {
        // Only IP:port targets: a name would be resolved here, unchecked.
        client
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await?;
    }
    Ok(target)
}

async fn socks5(
    client: &mut TcpStream,
    credentials: Option<&(String, String)>,
) -> io::Result<Option<SocketAddr>> {
    let mut greeting = [0u8; 2];
    client.read_exact(&mut greeting).await?;
    let mut methods = vec![0u8; usize::from(greeting[1])];
    client.read_exact(&mut methods).await?;
    let wanted = if credentials.is_some() { 2 } else { 0 };
    if !methods.contains(&wanted) {
        client.write_all(&[5, 0xff]).await?;
        return Ok(None);
    }
    client.write_all(&[5, wanted]).await?;
    if let Some((user, password)) = credentials {
        let mut version_len = [0u8; 2];
        client.read_exact(&mut version_len).await?;
        let mut got_user = vec![0u8; usize::from(version_len[1])];
        client.read_exact(&mut got_user).await?;
        let len = client.read_u8().await?;
        let mut got_password = vec![0u8; usize::from(len)];
        client.read_exact(&mut got_password).await?;
        if got_user != user.as_bytes() || got_password != password.as_bytes() {
            client.write_all(&[1, 1]).await?;
            return Ok(None);
        }
        client.write_all(&[1, 0]).await?;
    }
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    let ip: std::net::IpAddr = match request[3] {
        1 => {
            let mut octets = [0u8; 4];
            client.read_exact(&mut octets).await?;
            octets.into()
        }
        4 => {
            let mut octets = [0u8; 16];
            client.read_exact(&mut octets).await?;
            octets.into()
        }
        _ => {
            // A name would be resolved here, unchecked: refused.
            client.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
            return Ok(None);
        }
    };
    let port = client.read_u16().await?;
    Ok(Some(SocketAddr::new(ip, port)))
}
