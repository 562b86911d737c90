//! Connections to receivers: plain TCP or TLS, opened under the address
//! policy, and a keep-alive pool of idle ones per destination.
//!
//! Every open connection holds a slot of the pool ([`Slot`]): at most
//! `max_open` connections (file descriptors) exist at once. A new connection
//! takes a free slot, else closes the least recently used idle connection of
//! any destination, else waits until a connection closes or comes back.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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
    /// The pool slot this connection occupies, freed when it closes.
    slot: Slot,
}

/// The right to have one connection open (see [`Pool::slot`]).
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    /// Whether an idle connection can carry another request: nothing
    /// arriving (a peer that closed it makes the socket readable with
    /// end-of-stream; a TLS close_notify makes it readable too).
    fn is_idle_and_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.io.tcp().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Closes the connection and keeps its slot for the next one (a new
    /// connection replacing it must not wait for a slot while holding one).
    pub(crate) fn close(self) -> Slot {
        let Conn { io, slot, .. } = self;
        drop(io);
        slot
    }
}

/// A connection just opened, and how much of the request went with its
/// handshake.
pub(crate) struct Opened {
    pub conn: Conn,
    /// The leading bytes of the request already sent (see [`connect`]).
    pub sent: usize,
}

/// Opens a connection to `dest`: resolve under the policy, TCP, then TLS for
/// https.
///
/// Over TLS, `request` rides with the handshake's last flight: rustls holds
/// it until the keys are ready and encrypts it right after the client's
/// Finished, so both leave in one write. A new HTTPS connection then costs
/// one write (and one wake-up of the receiver) fewer than writing the
/// request after the handshake, and the server reads them together.
/// [`Opened::sent`] says how much went that way: all of it, unless the
/// request exceeds rustls' buffer; none over plain TCP, where the request
/// is written as on any connection.
pub(crate) async fn connect(
    dest: &Destination,
    policy: &AddressPolicy,
    tls: &TlsConnector,
    proxy: Option<&Proxy>,
    slot: Slot,
    request: &[u8],
) -> Result<Opened, OutboundError> {
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
    let mut sent = 0;
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
            .connect_with(name, tcp, |session| {
                // Before the handshake rustls only buffers plaintext, up
                // to its limit; what it does not take (all of it, were the
                // write to fail) is written after the handshake.
                sent = session.writer().write(request).unwrap_or(0);
            })
            .await
            .map_err(|e| error::from_io(&e, Stage::Handshake))?;
        Io::Tls(Box::new(stream))
    } else {
        Io::Plain(tcp)
    };
    let conn = Conn {
        io,
        buf: BytesMut::with_capacity(4096),
        reused: false,
        slot,
    };
    Ok(Opened { conn, sent })
}

/// Idle time after which a pooled connection is checked before reuse.
const PROBE_IDLE_AFTER: Duration = Duration::from_secs(1);

/// An idle connection, when it became idle, and its place in the pool's
/// least-recently-used order.
struct IdleConn {
    conn: Conn,
    since: Instant,
    seq: u64,
}

/// Idle connections of one destination, oldest first: connections are put
/// back at the end, so the expired ones are always at the front.
type IdleList = VecDeque<IdleConn>;

/// The idle connections of every destination.
#[derive(Default)]
struct Idle {
    by_dest: HashMap<Arc<Destination>, IdleList, foldhash::fast::RandomState>,
    /// Every idle connection by the order it became idle (oldest first): the
    /// one to close when the pool is full, whatever its destination.
    order: BTreeMap<u64, Arc<Destination>>,
    next_seq: u64,
    /// Attempts waiting for a slot. While any waits, a connection coming
    /// back is closed rather than kept, so its slot goes to the waiter.
    waiting: usize,
}

impl Idle {
    /// Removes `entry`, leaving its list, from the eviction order.
    fn forget(order: &mut BTreeMap<u64, Arc<Destination>>, entry: &IdleConn) {
        order.remove(&entry.seq);
    }

    /// Takes the least recently used idle connection of any destination.
    fn evict_oldest(&mut self) -> Option<Conn> {
        let (seq, dest) = self.order.pop_first()?;
        let list = self.by_dest.get_mut(&dest)?;
        // The oldest of all is the oldest of its destination: lists are
        // ordered as the sequence is.
        let at = list.iter().position(|e| e.seq == seq)?;
        list.remove(at).map(|e| e.conn)
    }
}

/// What the pool holds at one moment (for the service's `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionUsage {
    /// Connections open, busy or idle (each holds a slot).
    pub open: usize,
    /// Of those, the idle ones kept for reuse.
    pub idle: usize,
    /// Attempts waiting for a slot because `max_open` are open.
    pub waiting: usize,
    /// The bound on open connections (`WEBHOOK_MAX_CONNECTIONS`).
    pub max_open: usize,
}

/// Idle keep-alive connections per destination, newest last, and the slots
/// bounding how many connections are open at once.
pub(crate) struct Pool {
    idle: Mutex<Idle>,
    slots: Arc<Semaphore>,
    /// The slots in all (the bound `slots` started with).
    max_open: usize,
    max_per_destination: usize,
    max_idle: usize,
    idle_timeout: Duration,
}

/// Counts an attempt as waiting for a slot while it exists (an attempt
/// dropped while waiting, by its timeout, stops counting).
struct Waiting<'a>(&'a Pool);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut idle = self.0.lock();
        idle.waiting = idle.waiting.saturating_sub(1);
    }
}

impl Pool {
    /// A pool of at most `max_open` open connections (at least 1), keeping at
    /// most `max_idle` idle ones in all and `max_per_destination` per destination.
    pub(crate) fn new(
        max_open: usize,
        max_idle: usize,
        max_per_destination: usize,
        idle_timeout: Duration,
    ) -> Self {
        let max_open = max_open.clamp(1, Semaphore::MAX_PERMITS);
        Pool {
            idle: Mutex::new(Idle::default()),
            slots: Arc::new(Semaphore::new(max_open)),
            max_open,
            max_per_destination,
            max_idle,
            idle_timeout,
        }
    }

    /// The connections open and idle, and the attempts waiting for a slot, now.
    pub(crate) fn usage(&self) -> ConnectionUsage {
        let idle = self.lock();
        ConnectionUsage {
            open: self.max_open - self.slots.available_permits(),
            idle: idle.order.len(),
            waiting: idle.waiting,
            max_open: self.max_open,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        // A panic while holding the lock leaves only idle connections behind.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection: a free one, else the slot of the least
    /// recently used idle connection (closed for it), else the first one
    /// freed. Never held while waiting for another, so waiting cannot
    /// deadlock: every slot in use is freed when its attempt ends.
    pub(crate) async fn slot(&self) -> Result<Slot, OutboundError> {
        loop {
            if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
                return Ok(Slot { _permit: permit });
            }
            match self.evict_or_wait() {
                Some(conn) => drop(conn),
                None => break,
            }
        }
        let _waiting = Waiting(self);
        match Arc::clone(&self.slots).acquire_owned().await {
            Ok(permit) => Ok(Slot { _permit: permit }),
            // The semaphore is never closed; said in words all the same.
            Err(_closed) => Err(OutboundError::new(
                crate::ErrorKind::Connect,
                "the connection pool is shut down".to_string(),
            )),
        }
    }

    /// The least recently used idle connection, to close for its slot; with
    /// none, counts the caller as waiting. Counted under the lock that `put`
    /// checks: a connection put back from now on is closed for the waiter,
    /// and one put back before is found here.
    fn evict_or_wait(&self) -> Option<Conn> {
        let mut idle = self.lock();
        let evicted = idle.evict_oldest();
        if evicted.is_none() {
            idle.waiting += 1;
        }
        evicted
    }

    /// The most recently used idle connection to `dest` that is still open.
    pub(crate) fn take(&self, dest: &Destination) -> Option<Conn> {
        let now = Instant::now();
        let mut closed = Vec::new();
        let mut idle = self.lock();
        let Idle { by_dest, order, .. } = &mut *idle;
        let list = by_dest.get_mut(dest)?;
        let mut found = None;
        while let Some(entry) = list.pop_back() {
            Idle::forget(order, &entry);
            let idle_for = now.duration_since(entry.since);
            // Probing costs a syscall, so only connections idle long enough
            // for a receiver's keep-alive timeout to have closed them are
            // probed; the rare one closed sooner fails before any answer and
            // the attempt retries on a new connection (see `exchange`).
            if idle_for < self.idle_timeout
                && entry.conn.buf.is_empty()
                && (idle_for < PROBE_IDLE_AFTER || entry.conn.is_idle_and_open())
            {
                found = Some(entry.conn);
                break;
            }
            closed.push(entry.conn);
        }
        // An emptied list stays (the sweeper removes it when it stays
        // empty): under load it is refilled at once, and removing it cost a
        // new list and a copy of the key on the next `put`.
        drop(idle);
        drop(closed);
        found.map(|mut conn| {
            conn.reused = true;
            conn
        })
    }

    /// Keeps `conn` for the next request to `dest`, dropping the oldest idle
    /// one of the destination when it already has its maximum, and the oldest
    /// of all when the pool has its maximum. Closes it instead while an
    /// attempt waits for a slot.
    pub(crate) fn put(&self, dest: &Destination, conn: Conn) {
        if self.max_per_destination == 0 || self.max_idle == 0 {
            return;
        }
        let now = Instant::now();
        let mut closed = Vec::new();
        let mut idle = self.lock();
        if idle.waiting > 0 {
            drop(idle);
            drop(conn);
            return;
        }
        if idle.order.len() >= self.max_idle
            && let Some(oldest) = idle.evict_oldest()
        {
            closed.push(oldest);
        }
        let seq = idle.next_seq;
        idle.next_seq += 1;
        let Idle { by_dest, order, .. } = &mut *idle;
        let key = match by_dest.get_key_value(dest) {
            Some((key, _)) => Arc::clone(key),
            None => {
                let key = Arc::new(dest.clone());
                by_dest.insert(Arc::clone(&key), VecDeque::new());
                key
            }
        };
        if let Some(list) = by_dest.get_mut(&key) {
            // Only the front can have expired. (Checking every entry on each
            // put cost 7,000 instructions per delivery with 64 in flight.)
            drop_expired(list, order, now, self.idle_timeout, &mut closed);
            if list.len() >= self.max_per_destination
                && let Some(entry) = list.pop_front()
            {
                Idle::forget(order, &entry);
                closed.push(entry.conn);
            }
            list.push_back(IdleConn {
                conn,
                since: now,
                seq,
            });
            order.insert(seq, key);
        }
        drop(idle);
        drop(closed);
    }

    /// Closes every idle connection past the idle timeout (run periodically,
    /// so that destinations no longer written to do not keep sockets open).
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let mut closed = Vec::new();
        let mut idle = self.lock();
        let Idle { by_dest, order, .. } = &mut *idle;
        by_dest.retain(|_, list| {
            drop_expired(list, order, now, self.idle_timeout, &mut closed);
            !list.is_empty()
        });
        drop(idle);
        drop(closed);
    }

    /// Idle connections kept now (tests).
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.lock().order.len()
    }
}

/// Moves the connections of `list` idle for `timeout` or longer to `closed`
/// (closed once the pool's lock is released).
fn drop_expired(
    list: &mut IdleList,
    order: &mut BTreeMap<u64, Arc<Destination>>,
    now: Instant,
    timeout: Duration,
    closed: &mut Vec<Conn>,
) {
    while list
        .front()
        .is_some_and(|entry| now.duration_since(entry.since) >= timeout)
    {
        if let Some(entry) = list.pop_front() {
            Idle::forget(order, &entry);
            closed.push(entry.conn);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(port: u16) -> Destination {
        Destination {
            tls: false,
            host: "127.0.0.1".into(),
            port,
            literal: Some(IpAddr::from([127, 0, 0, 1])),
            identity: 0,
        }
    }

    /// A real loopback connection holding `slot`.
    async fn open(listener: &tokio::net::TcpListener, slot: Slot) -> Conn {
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        Conn {
            io: Io::Plain(tcp),
            buf: BytesMut::new(),
            reused: false,
            slot,
        }
    }

    /// A connector trusting the test CA, a loopback policy, and the
    /// destination of `receiver`.
    fn https_to(
        receiver: &webhook_testkit::TlsReceiver,
        ca: &webhook_testkit::TestCa,
    ) -> (TlsConnector, AddressPolicy, Destination) {
        let settings = crate::tls::TlsSettings {
            roots: crate::tls::TrustRoots::Bundled,
            extra_roots: crate::tls::ExtraRoots::from_pem(ca.ca_pem.as_bytes()).unwrap(),
        };
        let roots = Arc::new(crate::tls::root_store(&settings).unwrap());
        let config = crate::tls::client_config(roots, None, 16).unwrap();
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()], false);
        let url = url::Url::parse(&receiver.url("/")).unwrap();
        let dest = Destination {
            tls: true,
            host: "localhost".into(),
            port: url.port().unwrap(),
            literal: None,
            identity: 0,
        };
        (TlsConnector::from(Arc::new(config)), policy, dest)
    }

    fn post(body_len: usize) -> Vec<u8> {
        let mut request =
            format!("POST /hook HTTP/1.1\r\nhost: localhost\r\ncontent-length: {body_len}\r\n\r\n")
                .into_bytes();
        request.resize(request.len() + body_len, b'x');
        request
    }

    async fn requests_seen(receiver: &webhook_testkit::TlsReceiver) -> usize {
        for _ in 0..500 {
            if !receiver.requests().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        receiver.requests().len()
    }

    /// A new connection to a fresh HTTPS receiver, opened with `request`.
    async fn open_https(request: &[u8]) -> (webhook_testkit::TlsReceiver, Opened) {
        let ca = webhook_testkit::TestCa::generate().unwrap();
        let receiver = webhook_testkit::TlsReceiver::start(&ca, false)
            .await
            .unwrap();
        let (connector, policy, dest) = https_to(&receiver, &ca);
        let pool = Pool::new(4, 4, 4, Duration::from_secs(60));
        let slot = pool.slot().await.unwrap();
        let opened = connect(&dest, &policy, &connector, None, slot, request)
            .await
            .unwrap();
        (receiver, opened)
    }

    #[tokio::test]
    async fn a_new_https_connection_sends_the_request_with_its_handshake() {
        let request = post(100);
        let (receiver, opened) = open_https(&request).await;
        assert_eq!(
            opened.sent,
            request.len(),
            "all of it rode with the handshake"
        );
        // Nothing more is written: the receiver has the whole request.
        assert_eq!(requests_seen(&receiver).await, 1);
        assert!(
            receiver.requests()[0]
                .head
                .starts_with("POST /hook HTTP/1.1")
        );
    }

    #[tokio::test]
    async fn a_request_larger_than_the_handshake_takes_is_sent_whole() {
        // Beyond rustls' 64 KiB buffer of plaintext written before the keys.
        let request = post(200 * 1024);
        let (receiver, mut opened) = open_https(&request).await;
        assert!(
            0 < opened.sent && opened.sent < request.len(),
            "{}",
            opened.sent
        );
        crate::http1::send(&mut opened.conn, &request[opened.sent..])
            .await
            .unwrap();
        // The receiver reads the body to its length before it records the request.
        assert_eq!(requests_seen(&receiver).await, 1);
    }

    #[tokio::test]
    async fn plain_tcp_sends_nothing_before_the_request_is_written() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let pool = Pool::new(4, 4, 4, Duration::from_secs(60));
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()], false);
        let config =
            crate::tls::client_config(Arc::new(rustls::RootCertStore::empty()), None, 0).unwrap();
        let opened = connect(
            &dest(port),
            &policy,
            &TlsConnector::from(Arc::new(config)),
            None,
            pool.slot().await.unwrap(),
            &post(10),
        )
        .await
        .unwrap();
        assert_eq!(opened.sent, 0);
    }

    #[tokio::test]
    async fn a_full_pool_closes_the_least_recently_used_idle_connection_for_a_new_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::new(2, 2, 8, Duration::from_secs(60));
        let a = open(&listener, pool.slot().await.unwrap()).await;
        let b = open(&listener, pool.slot().await.unwrap()).await;
        pool.put(&dest(1), a);
        pool.put(&dest(2), b);
        assert_eq!(pool.idle_count(), 2);
        // No slot is free: the idle connection of destination 1, the older,
        // is closed for it.
        let slot = tokio::time::timeout(Duration::from_secs(5), pool.slot())
            .await
            .expect("an idle connection is evicted, not waited for")
            .unwrap();
        assert_eq!(pool.idle_count(), 1);
        assert!(pool.take(&dest(1)).is_none());
        assert!(pool.take(&dest(2)).is_some());
        drop(slot);
    }

    #[tokio::test]
    async fn a_waiting_attempt_gets_the_slot_of_a_connection_coming_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Arc::new(Pool::new(1, 4, 8, Duration::from_secs(60)));
        let busy = open(&listener, pool.slot().await.unwrap()).await;
        let waiter = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.slot().await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the only slot is in use");
        // Put back rather than closed: the pool closes it for the waiter.
        pool.put(&dest(1), busy);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter gets the slot")
            .unwrap()
            .unwrap();
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn the_idle_total_is_bounded_across_destinations() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::new(10, 3, 8, Duration::from_secs(60));
        for port in 0..5 {
            let conn = open(&listener, pool.slot().await.unwrap()).await;
            pool.put(&dest(port), conn);
        }
        assert_eq!(pool.idle_count(), 3);
        assert!(pool.take(&dest(0)).is_none(), "the oldest went first");
        assert!(pool.take(&dest(4)).is_some());
        // Slots of the closed connections are free again: 10 - 2 still open.
        assert_eq!(pool.slots.available_permits(), 8);
    }
}
