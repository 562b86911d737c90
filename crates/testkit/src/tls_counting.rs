//! [`TlsCountingReceiver`]: the counting receiver behind TLS 1.3, on one or
//! many endpoints, counting full and resumed handshakes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::HandshakeKind;
use rustls::server::ProducesTickets;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::TestCa;
use crate::counting::Counter;

/// Handshakes a [`TlsCountingReceiver`] completed or refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handshakes {
    /// Full handshakes: certificate sent and verified.
    pub full: usize,
    /// Resumed from a session ticket: no certificate.
    pub resumed: usize,
    /// Handshakes that failed.
    pub failed: usize,
}

#[derive(Default)]
struct Stats {
    full: AtomicUsize,
    resumed: AtomicUsize,
    failed: AtomicUsize,
    open: AtomicUsize,
    peak_open: AtomicUsize,
    next_conn: AtomicU64,
}

/// Counts a connection as open while it lives.
struct OpenGuard(Arc<Stats>);

impl OpenGuard {
    fn new(stats: &Arc<Stats>) -> OpenGuard {
        let open = stats.open.fetch_add(1, Ordering::SeqCst) + 1;
        stats.peak_open.fetch_max(open, Ordering::SeqCst);
        OpenGuard(Arc::clone(stats))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// HTTPS endpoints answering every request `200` as cheaply as
/// [`CountingReceiver`](crate::CountingReceiver) does, over TLS 1.3 only,
/// with session tickets for resumption.
///
/// Each address gets a certificate of its own that names only that address
/// (issued by the [`TestCa`]), so no certificate carries a long list of
/// names; each address listens on `ports_per_address` ephemeral ports. All
/// endpoints share one ticket key, as the servers of one provider would.
/// A client keys its sessions by server name, which for an IP literal is
/// the address: the ports of one address share their sessions.
///
/// Dropping it stops every listener and connection.
pub struct TlsCountingReceiver {
    counter: Arc<Counter>,
    stats: Arc<Stats>,
    endpoints: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    accepts: Vec<JoinHandle<()>>,
}

impl TlsCountingReceiver {
    /// Listens on `ports_per_address` ephemeral ports of each of `addresses`
    /// (any of 127.0.0.0/8), with room for about `expected` records.
    pub async fn start(
        ca: &TestCa,
        addresses: &[IpAddr],
        ports_per_address: usize,
        expected: usize,
    ) -> io::Result<TlsCountingReceiver> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let ticketer: Arc<dyn ProducesTickets> =
            rustls::crypto::aws_lc_rs::Ticketer::new().map_err(io::Error::other)?;
        let counter = Arc::new(Counter::new(expected));
        let stats = Arc::new(Stats::default());
        let (stop, stop_rx) = watch::channel(false);
        let mut endpoints = Vec::with_capacity(addresses.len() * ports_per_address);
        let mut accepts = Vec::with_capacity(endpoints.capacity());
        for &ip in addresses {
            let (chain, key) = ca.server_certificate(&[ip]).map_err(io::Error::other)?;
            let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(io::Error::other)?
                .with_no_client_auth()
                .with_single_cert(vec![chain], key)
                .map_err(io::Error::other)?;
            config.ticketer = Arc::clone(&ticketer);
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let acceptor = TlsAcceptor::from(Arc::new(config));
            for _ in 0..ports_per_address {
                let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
                endpoints.push(listener.local_addr()?);
                accepts.push(tokio::spawn(accept_loop(
                    listener,
                    acceptor.clone(),
                    Arc::clone(&counter),
                    Arc::clone(&stats),
                    stop_rx.clone(),
                )));
            }
        }
        Ok(TlsCountingReceiver {
            counter,
            stats,
            endpoints,
            stop,
            accepts,
        })
    }

    /// Every endpoint, address by address.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// `https://ADDRESS:PORT{path}` of endpoint `index` (wrapping around).
    pub fn url(&self, index: usize, path: &str) -> String {
        let addr = self.endpoints[index % self.endpoints.len()];
        match addr.ip() {
            IpAddr::V4(ip) => format!("https://{ip}:{}{path}", addr.port()),
            IpAddr::V6(ip) => format!("https://[{ip}]:{}{path}", addr.port()),
        }
    }

    /// Requests received since start.
    pub fn count(&self) -> usize {
        self.counter.count()
    }

    /// Removes and returns the records so far: `(event id, receive time)`,
    /// sorted by receive time.
    pub fn take_records(&self) -> Vec<(String, Instant)> {
        self.counter.take_records()
    }

    /// Full, resumed and failed handshakes so far.
    pub fn handshakes(&self) -> Handshakes {
        Handshakes {
            full: self.stats.full.load(Ordering::SeqCst),
            resumed: self.stats.resumed.load(Ordering::SeqCst),
            failed: self.stats.failed.load(Ordering::SeqCst),
        }
    }

    /// The most connections open at once so far, over all endpoints.
    pub fn peak_connections(&self) -> usize {
        self.stats.peak_open.load(Ordering::SeqCst)
    }

    /// Delays every answer by `delay` from now on (holds connections busy).
    pub fn set_delay(&self, delay: Duration) {
        self.counter.set_delay(delay);
    }
}

impl Drop for TlsCountingReceiver {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        for accept in &self.accepts {
            accept.abort();
        }
    }
}

impl std::fmt::Debug for TlsCountingReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCountingReceiver")
            .field("endpoints", &self.endpoints.len())
            .field("count", &self.count())
            .field("handshakes", &self.handshakes())
            .finish()
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    counter: Arc<Counter>,
    stats: Arc<Stats>,
    stop: watch::Receiver<bool>,
) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            // Out of file descriptors and the like: back off briefly.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, counter, stats, mut stop) = (
            acceptor.clone(),
            Arc::clone(&counter),
            Arc::clone(&stats),
            stop.clone(),
        );
        tokio::spawn(async move {
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => {}
                () = serve(tcp, &acceptor, &counter, &stats) => {}
            }
        });
    }
}

async fn serve(tcp: TcpStream, acceptor: &TlsAcceptor, counter: &Counter, stats: &Arc<Stats>) {
    let _open = OpenGuard::new(stats);
    let stream = match acceptor.accept(tcp).await {
        Ok(stream) => stream,
        Err(_) => {
            stats.failed.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    let kind = stream.get_ref().1.handshake_kind();
    let tally = match kind {
        Some(HandshakeKind::Resumed) => &stats.resumed,
        _ => &stats.full,
    };
    tally.fetch_add(1, Ordering::SeqCst);
    let conn_id = stats.next_conn.fetch_add(1, Ordering::Relaxed);
    counter
        .serve_h1(
            stream,
            BytesMut::with_capacity(16 * 1024),
            counter.shard(conn_id),
        )
        .await;
}
