//! Serves the router over HTTP/1.1 and HTTP/2 with the server-side limits
//! that `axum::serve` does not set: a deadline on reading a request's head
//! (a client that sends half a request and stalls is dropped instead of
//! holding a connection forever) and a cap on the head's size (a huge header
//! is answered `431`). Graceful shutdown: stop accepting, let the open
//! connections finish their requests, bounded by a deadline.
//!
//! An answer given before the request's body was read to its end (a `401`
//! of the authentication layer, a `404`, a `413`) says `Connection: close`:
//! hyper closes such a connection after the answer, because the unread rest
//! of the body stands between it and the next request, and a client that
//! was not told so would send its next request into a closed socket.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Version, header};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// Largest request head (request line and headers) read, in bytes. Larger
/// heads are answered `431 Request Header Fields Too Large` by hyper. Tokens
/// and the platform's headers are a few KiB at most.
pub const MAX_REQUEST_HEAD: usize = 32 * 1024;

/// Limits applied to every connection.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// How long a client may take to send a complete request head.
    pub header_read_timeout: Duration,
    /// How long open connections get to finish once shutdown begins.
    pub shutdown_grace: Duration,
}

/// Accepts connections until `shutdown` completes, then waits (at most
/// `limits.shutdown_grace`) for the open ones to finish.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) where
    S: tower::Service<
            hyper::Request<RequestBody>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_REQUEST_HEAD);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: the next accept may
                    // succeed once connections close; do not spin meanwhile.
                    tracing::warn!(%error, "cannot accept a connection");
                    if !is_connection_error(&error) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small responses go out at once rather than waiting on Nagle.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            // The rate limiter of `/internal` keys callers by peer address.
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(remote));
            // HTTP/2 streams end on their own; only HTTP/1 connections carry
            // the unread rest of a body into the next request.
            let http1 = request.version() != Version::HTTP_2;
            let (request, finished) = RequestBody::track(request);
            let answered = app.clone().oneshot(request);
            async move {
                let mut response = answered.await?;
                if http1 && finished.is_some_and(|f| !f.load(Ordering::Acquire)) {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // Clients that go away or time out are routine, not failures.
                tracing::debug!(%error, %remote, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?limits.shutdown_grace,
            "connections still open after the shutdown grace period; closing them"
        );
    }
}

/// A request body that records whether it was read to its end.
pub struct RequestBody {
    inner: Incoming,
    /// Set once the end is read; `None` for a body that was empty from the
    /// start (most `GET`s), which needs no watching.
    finished: Option<Arc<AtomicBool>>,
}

impl RequestBody {
    /// Wraps the body of `request`; the flag, if any, is set once its end is read.
    fn track(
        request: hyper::Request<Incoming>,
    ) -> (hyper::Request<RequestBody>, Option<Arc<AtomicBool>>) {
        let finished = (!request.body().is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
        let watched = finished.clone();
        let request = request.map(|inner| RequestBody {
            inner,
            finished: watched,
        });
        (request, finished)
    }

    fn mark_finished(&self) {
        if let Some(finished) = &self.finished {
            finished.store(true, Ordering::Release);
        }
    }
}

impl Body for RequestBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.mark_finished(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.mark_finished(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Errors of one incoming connection (not of the listener itself).
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
