//! DNS resolution that applies the address policy at connect time.
//!
//! Checking a webhook's host name only when it is registered is not enough:
//! its DNS answer can change afterwards (rebinding) and point at a private
//! address. Filtering here, on the very addresses about to be dialled,
//! closes that gap.

use std::net::SocketAddr;

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

/// The addresses of `host` the policy allows, in the resolver's order, with
/// `port` set. Runs once per new connection, never for a pooled one.
pub(crate) async fn resolve(
    policy: &AddressPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let resolved = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| ResolveError::Lookup {
            host: host.to_string(),
            source,
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
    Ok(allowed)
}
