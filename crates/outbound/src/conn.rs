//! Connections to receivers: plain TCP or TLS, opened under the address
//! policy, and a keep-alive pool of idle ones per destination.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use webhook_domain::address::AddressPolicy;

use crate::error::{self, Stage};
use crate::proxy::Proxy;
use crate::{OutboundError, resolver};

/// Where a request goes; also the pool's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Destination {
    /// `https`: the connection runs TLS.
    pub tls: bool,
    /// The URL's host: a name, or an IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Set when `host` is an IP literal (already checked against the policy).
    pub literal: Option<IpAddr>,
    /// The client certificate presented (`ClientIdentity` id; 0: none).
    pub identity: u64,
}

/// The byte stream of one connection.
pub(crate) enum Io {
    Plain(TcpStream),
    // Boxed: the TLS state is large; plain connections should not carry its size.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Io {
    fn tcp(&self) -> &TcpStream {
        match self {
            Io::Plain(tcp) => tcp,
            Io::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One open connection and the bytes read from it but not yet used.
pub(crate) struct Conn {
    pub io: Io,
    pub buf: BytesMut,
    /// Whether it came from the pool (and so may have been closed meanwhile).
    pub reused: bool,
}

impl Conn {
    /// Whether an idle connection can carry another request: nothing
    /// arriving (a peer that closed it makes the socket readable with
    /// end-of-stream; a TLS close_notify makes it readable too).
    fn is_idle_and_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.io.tcp().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// Opens a connection to `dest`: resolve under the policy, TCP, then TLS for https.
pub(crate) async fn connect(
    dest: &Destination,
    policy: &AddressPolicy,
    tls: &TlsConnector,
    proxy: Option<&Proxy>,
) -> Result<Conn, OutboundError> {
    let proxy = proxy.filter(|p| p.applies_to(&dest.host, dest.literal));
    let addrs = match dest.literal {
        Some(ip) => vec![SocketAddr::new(ip, dest.port)],
        None => resolver::resolve(policy, &dest.host, dest.port)
            .await
            .map_err(|e| error::from_resolve(&e))?,
    };
    let mut last_error = None;
    let mut tcp = None;
    for addr in addrs {
        // Through a proxy, the tunnel goes to the address checked above.
        let stream = match proxy {
            Some(proxy) => proxy.connect(addr).await,
            None => TcpStream::connect(addr).await,
        };
        match stream {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let tcp = match (tcp, last_error) {
        (Some(tcp), _) => tcp,
        (None, Some(e)) => return Err(error::from_io(&e, Stage::Connect)),
        (None, None) => {
            return Err(error::from_io(
                &io::Error::new(io::ErrorKind::NotFound, "no address to connect to"),
                Stage::Connect,
            ));
        }
    };
    // Webhook requests are small single writes; Nagle would only add latency.
    let _ = tcp.set_nodelay(true);
    let io = if dest.tls {
        let name = match dest.literal {
            Some(ip) => ServerName::IpAddress(ip.into()),
            None => ServerName::try_from(dest.host.clone()).map_err(|e| {
                OutboundError::new(
                    crate::ErrorKind::Tls,
                    format!(
                        "TLS handshake failed: {} is not a valid server name: {e}",
                        dest.host
                    ),
                )
            })?,
        };
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| error::from_io(&e, Stage::Handshake))?;
        Io::Tls(Box::new(stream))
    } else {
        Io::Plain(tcp)
    };
    Ok(Conn {
        io,
        buf: BytesMut::with_capacity(4096),
        reused: false,
    })
}

/// Idle time after which a pooled connection is checked before reuse.
const PROBE_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Idle connections of one destination with the instant each became idle,
/// oldest first: connections are put back at the end, so the expired ones
/// are always at the front.
type IdleList = VecDeque<(Conn, Instant)>;

/// The idle lists by destination.
type IdleMap = HashMap<Destination, IdleList, foldhash::fast::RandomState>;

/// Idle keep-alive connections per destination, newest last.
pub(crate) struct Pool {
    idle: Mutex<IdleMap>,
    max_per_destination: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(max_per_destination: usize, idle_timeout: Duration) -> Self {
        Pool {
            idle: Mutex::new(HashMap::default()),
            max_per_destination,
            idle_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdleMap> {
        // A panic while holding the lock leaves only idle connections behind.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection to `dest` that is still open.
    pub(crate) fn take(&self, dest: &Destination) -> Option<Conn> {
        let now = Instant::now();
        let mut idle = self.lock();
        let list = idle.get_mut(dest)?;
        let mut found = None;
        while let Some((conn, since)) = list.pop_back() {
            let idle_for = now.duration_since(since);
            // Probing costs a syscall, so only connections idle long enough
            // for a receiver's keep-alive timeout to have closed them are
            // probed; the rare one closed sooner fails before any answer and
            // the attempt retries on a new connection (see `exchange`).
            if idle_for < self.idle_timeout
                && conn.buf.is_empty()
                && (idle_for < PROBE_IDLE_AFTER || conn.is_idle_and_open())
            {
                found = Some(conn);
                break;
            }
        }
        // An emptied list stays (the sweeper removes it when it stays
        // empty): under load it is refilled at once, and removing it cost a
        // new list and a copy of the key on the next `put`.
        found.map(|mut conn| {
            conn.reused = true;
            conn
        })
    }

    /// Keeps `conn` for the next request to `dest`, dropping the oldest idle
    /// one when the destination already has its maximum.
    pub(crate) fn put(&self, dest: &Destination, conn: Conn) {
        if self.max_per_destination == 0 {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        if let Some(list) = idle.get_mut(dest) {
            // Only the front can have expired. (Checking every entry on each
            // put cost 7,000 instructions per delivery with 64 in flight.)
            drop_expired(list, now, self.idle_timeout);
            if list.len() >= self.max_per_destination {
                list.pop_front();
            }
            list.push_back((conn, now));
        } else {
            idle.insert(dest.clone(), VecDeque::from([(conn, now)]));
        }
    }

    /// Closes every idle connection past the idle timeout (run periodically,
    /// so that destinations no longer written to do not keep sockets open).
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.lock();
        idle.retain(|_, list| {
            drop_expired(list, now, self.idle_timeout);
            !list.is_empty()
        });
    }
}

/// Closes the connections of `list` idle for `timeout` or longer.
fn drop_expired(list: &mut IdleList, now: Instant, timeout: Duration) {
    while list
        .front()
        .is_some_and(|(_, since)| now.duration_since(*since) >= timeout)
    {
        list.pop_front();
    }
}

/// Keeps the pool swept while the client lives.
pub(crate) fn spawn_sweeper(pool: &Arc<Pool>, every: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return; // built outside a runtime: idle connections expire on use instead
    };
    let pool = Arc::downgrade(pool);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(pool) = pool.upgrade() else {
                return;
            };
            pool.sweep();
        }
    });
}
