//! The HTTP/1.1 request reader (heads and chunk sizes parsed by httparse)
//! and the plumbing that hands HTTP/2 prior-knowledge connections to hyper.
//!
//! HTTP/1.1 stays on raw sockets rather than hyper's server because the
//! receivers' answers must be scripted byte for byte: `Behavior::Reset`
//! closes the socket with `SO_LINGER` 0 (a handler under hyper never holds
//! the socket), and the counting receiver answers pipelined requests in one
//! write for the benchmarks.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted.
const MAX_BODY: usize = 256 * 1024 * 1024;
/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Filler for large and slow bodies.
pub(crate) static FILL: [u8; 65536] = [b'x'; 65536];

/// What the connection loop needs to know about a request head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadInfo {
    /// Bytes of the head, including the final blank line.
    pub head_len: usize,
    /// `Content-Length`, when sent.
    pub content_length: Option<usize>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// The connection closes after this exchange.
    pub close: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

fn bad(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

/// Most request headers accepted (hyper's default as well).
const MAX_HEADERS: usize = 100;

/// Parses the request head at the start of `buf` with httparse; `Ok(None)`
/// while it is incomplete.
fn parse_request<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut [httparse::Header<'b>],
) -> io::Result<Option<(usize, httparse::Request<'h, 'b>)>> {
    let mut request = httparse::Request::new(slots);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some((len, request))),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Err(bad("request head too large")),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

/// Parses a complete request head at the start of `buf`; `Ok(None)` when
/// the head is not complete yet.
pub(crate) fn parse_head(buf: &[u8]) -> io::Result<Option<HeadInfo>> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Some((head_len, request)) = parse_request(buf, &mut slots)? else {
        return Ok(None);
    };
    let mut info = HeadInfo {
        head_len,
        content_length: None,
        chunked: false,
        // HTTP/1.0 closes unless asked to keep the connection.
        close: request.version == Some(0),
        expect_continue: false,
    };
    for header in request.headers.iter() {
        let (name, value) = (header.name, trim(header.value));
        if name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(value).map_err(|_| bad("bad content-length"))?;
            let len: usize = text.parse().map_err(|_| bad("bad content-length"))?;
            if len > MAX_BODY {
                return Err(bad("request body too large"));
            }
            info.content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            info.chunked = has_token(value, b"chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(value, b"close") {
                info.close = true;
            } else if has_token(value, b"keep-alive") {
                info.close = false;
            }
        } else if name.eq_ignore_ascii_case("expect") {
            info.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    Ok(Some(info))
}

/// Method, request target and headers of a head already checked by [`parse_head`].
pub(crate) fn head_parts(head: &[u8]) -> io::Result<(String, String, HeaderMap)> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (_, request) = parse_request(head, &mut slots)?.ok_or_else(|| bad("incomplete head"))?;
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        let name =
            HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| bad("bad header name"))?;
        let value =
            HeaderValue::from_bytes(trim(header.value)).map_err(|_| bad("bad header value"))?;
        headers.append(name, value);
    }
    Ok((
        request.method.unwrap_or_default().to_owned(),
        request.path.unwrap_or_default().to_owned(),
        headers,
    ))
}

/// Reads more bytes into `buf`; `false` at end of stream.
pub(crate) async fn read_more(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> io::Result<bool> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
    Ok(stream.read_buf(buf).await? > 0)
}

/// Reads until a full head is buffered; `Ok(None)` when the peer closed
/// cleanly between requests.
pub(crate) async fn read_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> io::Result<Option<HeadInfo>> {
    loop {
        if let Some(info) = parse_head(buf)? {
            return Ok(Some(info));
        }
        if !read_more(stream, buf).await? {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

/// Ensures at least `n` bytes are buffered.
async fn fill_to(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    n: usize,
) -> io::Result<()> {
    if buf.len() < n {
        buf.reserve(n - buf.len());
    }
    while buf.len() < n {
        if !read_more(stream, buf).await? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Reads the body that follows a head (the head is already consumed from `buf`).
pub(crate) async fn read_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    info: &HeadInfo,
) -> io::Result<Bytes> {
    if info.chunked {
        return read_chunked(stream, buf).await;
    }
    let len = info.content_length.unwrap_or(0);
    fill_to(stream, buf, len).await?;
    Ok(buf.split_to(len).freeze())
}

/// Decodes a chunked body (trailers are read and discarded).
pub(crate) async fn read_chunked(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> io::Result<Bytes> {
    let mut body = BytesMut::new();
    loop {
        // The size line (hex size, optional extensions, CRLF).
        let (line_len, size) = loop {
            match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete(parsed)) => break parsed,
                Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                    return Err(bad("chunk line too long"));
                }
                Ok(httparse::Status::Partial) => {
                    if !read_more(stream, buf).await? {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(_) => return Err(bad("bad chunk size")),
            }
        };
        buf.advance(line_len);
        let size = usize::try_from(size).map_err(|_| bad("request body too large"))?;
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                let p = loop {
                    if let Some(p) = find(buf, b"\r\n") {
                        break p;
                    }
                    if !read_more(stream, buf).await? {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                };
                buf.advance(p + 2);
                if p == 0 {
                    return Ok(body.freeze());
                }
            }
        }
        if size > MAX_BODY - body.len() {
            return Err(bad("request body too large"));
        }
        fill_to(stream, buf, size + 2).await?;
        body.extend_from_slice(&buf[..size]);
        buf.advance(size + 2);
    }
}

/// Reads the first bytes of a connection; `true` when they are the HTTP/2
/// prior-knowledge preface (the bytes stay in `buf` either way).
pub(crate) async fn sniff_h2(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<bool> {
    loop {
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        if !read_more(stream, buf).await? {
            return Ok(false);
        }
    }
}

/// A TCP stream with bytes already read from it put back in front.
pub(crate) struct Rewind {
    pre: Bytes,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pre.is_empty() {
            let n = this.pre.len().min(out.remaining());
            out.put_slice(&this.pre[..n]);
            this.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, out)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves an HTTP/2 prior-knowledge connection with hyper; `pre` holds the
/// bytes already read (the preface).
pub(crate) async fn serve_h2<F, Fut>(stream: TcpStream, pre: Bytes, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<RespBody>, io::Error>> + Send + 'static,
{
    let io = TokioIo::new(Rewind { pre, inner: stream });
    let service = hyper::service::service_fn(handle);
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}

/// Response bodies of the HTTP/2 path.
pub(crate) enum RespBody {
    /// The whole body at once (`None` once sent).
    Full(Option<Bytes>),
    /// `remaining` filler bytes, sent in 64 KiB frames.
    Big {
        /// Bytes still to send.
        remaining: usize,
    },
    /// One filler byte every `interval`.
    Trickle {
        /// Bytes still to send.
        remaining: usize,
        /// Pause before each byte.
        interval: Duration,
        /// Timer of the next byte.
        sleep: Pin<Box<Sleep>>,
    },
}

impl RespBody {
    /// A slow body of `bytes` bytes, one every `interval`.
    pub(crate) fn trickle(bytes: usize, interval: Duration) -> Self {
        RespBody::Trickle {
            remaining: bytes,
            interval,
            sleep: Box::pin(tokio::time::sleep(interval)),
        }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            RespBody::Full(body) => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
            RespBody::Big { remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let n = (*remaining).min(FILL.len());
                *remaining -= n;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&FILL[..n])))))
            }
            RespBody::Trickle {
                remaining,
                interval,
                sleep,
            } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                ready!(sleep.as_mut().poll(cx));
                sleep.as_mut().reset(Instant::now() + *interval);
                *remaining -= 1;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&FILL[..1])))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Full(body) => body.as_ref().is_none_or(Bytes::is_empty),
            RespBody::Big { remaining } | RespBody::Trickle { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Full(body) => {
                SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
            RespBody::Big { remaining } | RespBody::Trickle { remaining, .. } => {
                SizeHint::with_exact(*remaining as u64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let raw = b"POST /hook?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello";
        let info = parse_head(raw).unwrap().unwrap();
        assert_eq!(info.head_len, raw.len() - 5);
        assert_eq!(info.content_length, Some(5));
        assert!(!info.close && !info.chunked);
        let (m, t, h) = head_parts(&raw[..info.head_len]).unwrap();
        assert_eq!((m.as_str(), t.as_str()), ("POST", "/hook?x=1"));
        assert_eq!(h.get("host").unwrap(), "a");
        assert!(
            parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n")
                .unwrap()
                .is_none()
        );
        let info = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(info.close);
        let info = parse_head(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(info.chunked && info.close);
        assert!(parse_head(b"GET / HTTP/9\r\n\r\n").is_err());
        assert!(parse_head(b"POST / HTTP/1.1\r\nno colon here\r\n\r\n").is_err());
        assert!(parse_head(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
        let huge = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; MAX_HEAD + 1]].concat();
        assert!(parse_head(&huge).is_err());
    }

    #[tokio::test]
    async fn reads_chunked_bodies_with_extensions_and_trailers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sender = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut client = TcpStream::connect(addr).await.unwrap();
            for piece in [
                &b"5;name=va"[..],
                b"lue\r\nhello\r\n",
                b"6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT",
            ] {
                client.write_all(piece).await.unwrap();
                client.flush().await.unwrap();
            }
            client
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        let body = read_chunked(&mut stream, &mut buf).await.unwrap();
        assert_eq!(&body[..], b"hello world");
        // The next request's bytes stay buffered.
        while buf.len() < 4 {
            assert!(read_more(&mut stream, &mut buf).await.unwrap());
        }
        assert_eq!(&buf[..], b"NEXT");
        drop(sender.await.unwrap());

        let sender = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.write_all(b"zz\r\n").await.unwrap();
            client
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        assert!(read_chunked(&mut stream, &mut buf).await.is_err());
        drop(sender.await.unwrap());
    }
}
