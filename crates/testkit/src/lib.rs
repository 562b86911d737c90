//! Local HTTP receivers for testing and benchmarking webhook deliveries.
//!
//! * [`Receiver`] records every request ([`ReceivedRequest`]) and answers as
//!   scripted by a [`Behavior`]: any status, `Retry-After`, redirects, delays,
//!   slow or large bodies, never answering, or resetting the connection. It
//!   can check both signature schemes of a delivery
//!   ([`ReceivedRequest::verify_signatures`]).
//! * [`CountingReceiver`] answers `200` as fast as possible and records only
//!   event ids and receive times; it can go down and come back on the same port.
//! * [`TestProxy`] is an HTTP `CONNECT` or SOCKS5 egress proxy to loopback
//!   that records the targets of its tunnels.
//! * [`TlsReceiver`] answers HTTPS with a certificate of a [`TestCa`] made
//!   for the test, and can demand a client certificate.
//! * [`TlsCountingReceiver`] is the counting receiver behind TLS 1.3 with
//!   session tickets, on many endpoints (addresses of 127.0.0.0/8 and ports),
//!   counting full and resumed handshakes and connections open at once.
//!
//! * [`response_fuzz::ResponseFuzzer`] serves arbitrary response bytes from a
//!   raw socket to the outbound client and checks what it makes of them (the
//!   body of the `outbound_response` fuzz target and its smoke test).
//!
//! The receivers listen on `127.0.0.1` on an ephemeral port, speak HTTP/1.1 with
//! keep-alive and HTTP/2 with prior knowledge, must be started inside a Tokio
//! runtime, and shut down when dropped.

#![warn(missing_docs)]

mod counting;
mod proxy;
mod receiver;
pub mod response_fuzz;
mod server;
mod tls;
mod tls_counting;
mod wire;

pub use counting::CountingReceiver;
pub use proxy::{ProxyProtocol, TestProxy};
pub use receiver::{Behavior, ReceivedRequest, Receiver};
pub use tls::{PemPair, TestCa, TlsReceiver, TlsRequest};
pub use tls_counting::{Handshakes, TlsCountingReceiver};
