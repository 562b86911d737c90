//! The `portal-link` command: prints a portal URL for one user.

use std::net::SocketAddr;
use std::path::PathBuf;

use webhook_domain::retry::parse_duration;
use webhook_service::config::{Config, Settings};
use webhook_service::devmode;
use webhook_service::portal::cli::link_for;

/// The command's arguments.
#[derive(clap::Args)]
pub struct PortalLinkArgs {
    /// User id whose view the link opens.
    #[arg(long)]
    user: String,
    /// The user is an operator: the link sees every user's webhooks.
    #[arg(long)]
    admin: bool,
    /// Only reads: the link cannot change anything.
    #[arg(long)]
    read_only: bool,
    /// Lifetime, e.g. 15m, 1h, 7d (at most 7d).
    #[arg(long, default_value = "1h")]
    expires_in: String,
    /// Use the key that `serve --dev` generated in the data directory.
    #[arg(long)]
    dev: bool,
    /// TOML file with settings.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Prints the link.
pub fn run(args: PortalLinkArgs) -> anyhow::Result<()> {
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
