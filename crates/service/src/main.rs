//! `webhook-service`: serve, migrate, or mint a development token.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

// glibc's allocator spent ~15 % of the service's CPU under load (arena locks,
// consolidation); mimalloc's thread-local free lists avoid most of it.
// `--features system-allocator` keeps glibc's, so that heap profilers
// (valgrind's DHAT, heaptrack) see every allocation.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use webhook_domain::retry::parse_duration;
use webhook_service::config::{Config, Settings};
use webhook_service::{auth, devmode, server, telemetry};

mod portal_link;

#[derive(Parser)]
#[command(
    name = "webhook-service",
    version,
    about = "Smart AI Hub webhook delivery service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// Local development: generated secrets, http and loopback destinations allowed, pretty logs.
        #[arg(long)]
        dev: bool,
        /// Print the effective configuration (secrets redacted) and exit.
        #[arg(long)]
        print_config: bool,
        /// TOML file with settings (keys are the environment variable names).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Apply database migrations and exit.
    Migrate {
        /// TOML file with settings.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Mint a JWT shaped like the platform's, signed with JWT_SECRET.
    Token {
        /// User id (the token's userId claim).
        #[arg(long)]
        user: String,
        /// Email claim.
        #[arg(long)]
        email: Option<String>,
        /// Add the admin role.
        #[arg(long)]
        admin: bool,
        /// Lifetime, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Use the secret that `serve --dev` generated in the data directory.
        #[arg(long)]
        dev: bool,
        /// TOML file with settings.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print a portal link for one user (open it in a browser).
    ///
    /// Example: webhook-service portal-link --dev --user u-123 --expires-in 2h
    PortalLink {
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            dev,
            print_config,
            config,
        } => {
            let settings = Settings::load(config.as_deref())?;
            let mut config = Config::from_settings(&settings, dev)?;
            if print_config {
                println!("{}", serde_json::to_string_pretty(&config.redacted())?);
                return Ok(());
            }
            telemetry::init(&config.log_level, config.log_format);
            if dev {
                let generated = devmode::fill_missing(&mut config)?;
                if !generated.is_empty() {
                    eprintln!(
                        "--dev: using generated {} kept in {}",
                        generated.join(", "),
                        devmode::secrets_path(&config.data_dir).display()
                    );
                }
                eprintln!(
                    "--dev: mint a token with: cargo run --release -- token --dev --user <user-id> [--admin]"
                );
                eprintln!(
                    "--dev: or a portal link with: cargo run --release -- portal-link --dev --user <user-id> [--admin]"
                );
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(server::run(config))
        }
        Command::Migrate { config } => {
            let settings = Settings::load(config.as_deref())?;
            let config = Config::from_settings(&settings, true)?;
            if let Some(url) = &config.database_url {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let applied = runtime.block_on(
                    webhook_service::store::postgres::PostgresStore::migrate_only(url.expose()),
                )?;
                println!("{applied} migrations applied in the PostgreSQL database of DATABASE_URL");
                return Ok(());
            }
            let applied =
                webhook_service::store::sqlite::SqliteStore::migrate_only(&config.data_dir)?;
            println!(
                "{applied} migrations applied in {}",
                config.data_dir.display()
            );
            Ok(())
        }
        Command::Token {
            user,
            email,
            admin,
            ttl,
            dev,
            config,
        } => {
            let settings = Settings::load(config.as_deref())?;
            let config = Config::from_settings(&settings, true)?;
            let ttl: Duration = parse_duration(&ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
            let secret = match (&config.jwt.secret, dev) {
                // `serve --dev` also prefers a configured JWT_SECRET over the generated one.
                (Some(secret), _) => secret.clone(),
                (None, true) => devmode::jwt_secret(&config.data_dir)?,
                (None, false) => anyhow::bail!(
                    "JWT_SECRET is not set (use --dev for the secret of `serve --dev`)"
                ),
            };
            let token = auth::mint_token(&secret, &user, email.as_deref(), admin, ttl)?;
            println!("{token}");
            Ok(())
        }
        Command::PortalLink {
            user,
            admin,
            read_only,
            expires_in,
            dev,
            config,
        } => portal_link::run(portal_link::Args {
            user,
            admin,
            read_only,
            expires_in,
            dev,
            config,
        }),
    }
}
