//! DNS resolution that applies the address policy at connect time.
//!
//! Checking a webhook's host name only when it is registered is not enough:
//! its DNS answer can change afterwards (rebinding) and point at a private
//! address. Filtering here, on the very addresses the connector is about to
//! dial, closes that gap.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use webhook_domain::address::{AddressPolicy, BlockedAddress};

/// Why a host name yields no address to connect to.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    /// The system resolver failed (no such name, no DNS server, …).
    #[error("could not resolve {host}: {source}")]
    Lookup {
        host: String,
        #[source]
        source: std::io::Error,
    },
    /// The name resolved, but to nothing.
    #[error("{host} resolved to no address")]
    NoAddresses { host: String },
    /// Every address of the name is refused by the policy.
    #[error("{host} resolves only to refused addresses: {first}{}", more_refused(*.refused))]
    Blocked {
        host: String,
        first: BlockedAddress,
        refused: usize,
    },
}

fn more_refused(refused: usize) -> String {
    match refused {
        0 | 1 => String::new(),
        2 => " (and 1 more refused address)".to_string(),
        n => format!(" (and {} more refused addresses)", n - 1),
    }
}

/// A resolver for hyper-util's `HttpConnector` that drops refused addresses.
#[derive(Debug, Clone)]
pub(crate) struct PolicyResolver {
    policy: Arc<AddressPolicy>,
}

impl PolicyResolver {
    pub(crate) fn new(policy: Arc<AddressPolicy>) -> Self {
        PolicyResolver { policy }
    }
}

impl tower_service::Service<Name> for PolicyResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    // Boxed: runs once per new connection, not per request, so the
    // allocation is off the pooled hot path.
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ResolveError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ResolveError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let host = name.as_str();
            // Port 0: the connector sets the URL's port on each address.
            let resolved = tokio::net::lookup_host((host, 0)).await.map_err(|source| {
                ResolveError::Lookup {
                    host: host.to_string(),
                    source,
                }
            })?;
            let mut allowed = Vec::new();
            let mut first_refused = None;
            let mut refused = 0;
            for addr in resolved {
                match policy.check(addr.ip()) {
                    Ok(()) => allowed.push(addr),
                    Err(blocked) => {
                        refused += 1;
                        first_refused.get_or_insert(blocked);
                    }
                }
            }
            if allowed.is_empty() {
                return Err(match first_refused {
                    Some(first) => ResolveError::Blocked {
                        host: host.to_string(),
                        first,
                        refused,
                    },
                    None => ResolveError::NoAddresses {
                        host: host.to_string(),
                    },
                });
            }
            Ok(allowed.into_iter())
        })
    }
}
