//! `webhook-service portal-link`, and the link `serve --dev` prints.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use webhook_domain::ids::UserId;

use super::link;
use crate::config::Config;

/// The user `serve --dev` prints a portal link for.
pub use crate::devmode::DEV_USER;

/// What cannot be minted from the command line.
#[derive(Debug, thiserror::Error)]
pub enum LinkCommandError {
    /// No key to sign with.
    #[error("WEBHOOK_ENCRYPTION_KEY is not set (use --dev for the key of `serve --dev`)")]
    NoKey,
    /// The user id is not valid.
    #[error("--user: {0}")]
    User(String),
    /// Signing failed.
    #[error(transparent)]
    Mint(#[from] crate::auth::MintError),
}

/// Where browsers reach a service listening on `addr`: `WEBHOOK_PUBLIC_URL`,
/// else the address itself (loopback when it listens on every interface).
pub fn base_url(config: &Config, addr: SocketAddr) -> String {
    if let Some(url) = &config.portal.public_url {
        return url.clone();
    }
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// A portal URL for `user` on the service configured by `config`.
pub fn link_for(
    config: &Config,
    addr: SocketAddr,
    user: &str,
    admin: bool,
    read_only: bool,
    lifetime: Duration,
) -> Result<String, LinkCommandError> {
    let key = config
        .encryption_key
        .as_ref()
        .map(link::signing_key)
        .ok_or(LinkCommandError::NoKey)?;
    let user = UserId::parse(user).map_err(|e| LinkCommandError::User(e.to_string()))?;
    let minted = link::mint(
        &key,
        &user,
        admin,
        read_only,
        lifetime.min(link::MAX_LINK_LIFETIME),
    )?;
    Ok(link::portal_url(&base_url(config, addr), &minted.token))
}
