//! The accept loop shared by the receivers: a listener on 127.0.0.1 that can be
//! closed and re-opened on the same port, and that drops its connections on demand.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Locks a mutex, ignoring poisoning (a panicking test must not hide the data).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves one accepted connection until it ends.
pub(crate) trait ConnHandler: Send + Sync + 'static {
    /// Serves `stream`; `conn_id` is unique per server.
    fn serve(self: Arc<Self>, stream: TcpStream, conn_id: u64) -> impl Future<Output = ()> + Send;
}

/// One listening period: from a bind to the next close.
struct Generation {
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

/// A listener with its connection tasks.
pub(crate) struct Server<H: ConnHandler> {
    addr: SocketAddr,
    pub(crate) handler: Arc<H>,
    current: Mutex<Option<Generation>>,
    active: Arc<AtomicUsize>,
    next_conn: Arc<AtomicU64>,
}

/// Binds with `SO_REUSEADDR`, so the port can be bound again right after a close.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Decrements the active-connection counter when a connection task ends.
struct ActiveGuard(Arc<AtomicUsize>);

impl ActiveGuard {
    fn new(active: &Arc<AtomicUsize>) -> Self {
        active.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(active))
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<H: ConnHandler> Server<H> {
    /// Binds an ephemeral port on 127.0.0.1 and starts accepting.
    pub(crate) fn start(handler: H) -> io::Result<Self> {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let server = Self {
            addr,
            handler: Arc::new(handler),
            current: Mutex::new(None),
            active: Arc::new(AtomicUsize::new(0)),
            next_conn: Arc::new(AtomicU64::new(0)),
        };
        let generation = server.spawn_accept(listener);
        *lock(&server.current) = Some(generation);
        Ok(server)
    }

    /// The bound address (kept across down/up cycles).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn spawn_accept(&self, listener: TcpListener) -> Generation {
        let (stop, stop_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(
            listener,
            Arc::clone(&self.handler),
            stop_rx,
            Arc::clone(&self.active),
            Arc::clone(&self.next_conn),
        ));
        Generation { stop, accept }
    }

    /// Closes the listener and drops every connection (`true`), or binds the
    /// same port again (`false`). Returns once the change is in effect.
    pub(crate) async fn set_down(&self, down: bool) -> io::Result<()> {
        if down {
            let generation = lock(&self.current).take();
            if let Some(generation) = generation {
                generation.stop.send_replace(true);
                // The listener is dropped when the accept task returns.
                let _ = generation.accept.await;
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Ok(())
        } else {
            if lock(&self.current).is_some() {
                return Ok(());
            }
            let mut attempt = 0;
            let listener = loop {
                match listen(self.addr) {
                    Ok(listener) => break listener,
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < 100 => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            let generation = self.spawn_accept(listener);
            let mut current = lock(&self.current);
            if current.is_none() {
                *current = Some(generation);
            } else {
                // Raced with another `set_down(false)`: keep the first listener.
                generation.stop.send_replace(true);
                generation.accept.abort();
            }
            Ok(())
        }
    }

    /// Stops accepting and drops all connections, without waiting.
    pub(crate) fn stop(&self) {
        if let Some(generation) = lock(&self.current).take() {
            generation.stop.send_replace(true);
            generation.accept.abort();
        }
    }
}

impl<H: ConnHandler> Drop for Server<H> {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop<H: ConnHandler>(
    listener: TcpListener,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
    active: Arc<AtomicUsize>,
    next_conn: Arc<AtomicU64>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                let conn_id = next_conn.fetch_add(1, Ordering::Relaxed);
                let handler = Arc::clone(&handler);
                let mut conn_stop = stop.clone();
                let guard = ActiveGuard::new(&active);
                tokio::spawn(async move {
                    let _guard = guard;
                    tokio::select! {
                        biased;
                        _ = conn_stop.wait_for(|s| *s) => {}
                        () = handler.serve(stream, conn_id) => {}
                    }
                });
            }
            // Out of file descriptors and the like: back off briefly.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
