//! The `portal-link` command: prints a portal URL for one user.

use std::net::SocketAddr;
use std::path::PathBuf;

use webhook_domain::retry::parse_duration;
use webhook_service::config::{Config, Settings};
use webhook_service::devmode;
use webhook_service::portal::cli::link_for;

/// The command's arguments.
pub struct Args {
    pub user: String,
    pub admin: bool,
    pub read_only: bool,
    pub expires_in: String,
    pub dev: bool,
    pub config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let settings = Settings::load(args.config.as_deref())?;
    // As for `token`: minting needs only the key, not every setting `serve`
    // requires (JWT_SECRET, INTERNAL_SERVICE_SECRET).
    let mut config = Config::from_settings(&settings, true)?;
    if args.dev {
        // The key `serve --dev` generated, unless one is configured.
        devmode::fill_missing(&mut config)?;
    }
    let lifetime =
        parse_duration(&args.expires_in).map_err(|e| anyhow::anyhow!("--expires-in: {e}"))?;
    let addr = SocketAddr::new(config.host, config.port);
    let url = link_for(
        &config,
        addr,
        &args.user,
        args.admin,
        args.read_only,
        lifetime,
    )?;
    println!("{url}");
    Ok(())
}
