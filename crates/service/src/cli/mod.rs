//! The command line: `serve`, `migrate`, `token`, and the developer and
//! operator commands (`listen`, `send`, `webhooks`, `deliveries`, `backup`, ...).
//!
//! `main.rs` only parses and dispatches here. Each command group has its own
//! module; `client.rs` is the one HTTP client of the commands that talk to a
//! running service, and `output.rs` decides between tables, `--json` and colour.

mod client;
mod connect;
mod deliveries;
mod error;
mod filter_test;
mod http;
mod listen;
mod ops;
mod output;
mod portal_link;
mod send;
mod serve;
mod webhook_options;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches as _, Parser, Subcommand};

pub use error::CliError;

/// The exit codes, shown at the end of every command's help.
const EXIT_CODES: &str = "\
Exit codes: 0 success; 1 the service answered an error, an event was rejected or a
check failed; 2 usage error; 3 the service cannot be reached.";

/// Where client commands find the service, shown after the top-level help.
const AFTER_HELP: &str = "\
Client commands find the service with --url (WEBHOOK_SERVICE_URL, default http://127.0.0.1:3005),
a user token --token (WEBHOOK_TOKEN) and the internal secret --internal-secret
(INTERNAL_SERVICE_SECRET). With --dev they read the secrets `serve --dev` generated
in the data directory (WEBHOOK_DATA_DIR, default ./data) and need nothing else.";

/// The service's settings, listed in `serve --help`.
const SERVE_AFTER_HELP: &str = "\
Settings come from the environment (or a TOML file with the same keys, --config):
  HOST, PORT                      listen address (default 0.0.0.0:3005; 127.0.0.1 in --dev)
  WEBHOOK_DATA_DIR                embedded store directory (default ./data)
  DATABASE_URL                    postgres://... to use PostgreSQL instead
  JWT_SECRET | JWT_PUBLIC_KEY     verify users' tokens (HS256 | RS256/ES256)
  INTERNAL_SERVICE_SECRET         bearer secret of the platform's services on /internal
  WEBHOOK_ENCRYPTION_KEY          32-byte key (base64 or hex) sealing webhook secrets at rest
  WEBHOOK_ALLOWED_CIDRS           non-public destinations allowed, e.g. 10.0.0.0/8
  WEBHOOK_TIMEOUT, WEBHOOK_RETRY_SCHEDULE, LOG_LEVEL, LOG_FORMAT, ALLOWED_ORIGINS, ...
  (`serve --print-config` shows every effective value, secrets redacted)

Examples:
  webhook-service serve --dev --port 4000
  PORT=3005 JWT_SECRET=... INTERNAL_SERVICE_SECRET=... WEBHOOK_ENCRYPTION_KEY=... webhook-service serve";

/// The `webhook-service` command line.
#[derive(Parser)]
#[command(
    name = "webhook-service",
    version,
    about = "Smart AI Hub webhook delivery service",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a client command finds the service and how it authenticates.
#[derive(Args, Clone, Debug)]
pub struct Connection {
    /// Base URL of the running service.
    #[arg(long, env = "WEBHOOK_SERVICE_URL", value_name = "URL")]
    url: Option<String>,
    /// A user (or admin) token, as `webhook-service token` mints.
    #[arg(long, env = "WEBHOOK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The platform services' secret for /internal (for `send`).
    #[arg(long, env = "INTERNAL_SERVICE_SECRET", hide_env_values = true)]
    internal_secret: Option<String>,
    /// Talk to a `serve --dev` service: read its generated secrets from the
    /// data directory and mint what is needed.
    #[arg(long)]
    dev: bool,
    /// The user `--dev` mints its token for (and `send --dev` sends to).
    #[arg(long = "as-user", value_name = "USER_ID", default_value = connect::DEV_USER)]
    as_user: String,
    /// Print JSON instead of tables (one object, or one per line for streams).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    #[command(after_help = SERVE_AFTER_HELP)]
    Serve(serve::ServeArgs),
    /// Apply database migrations and exit.
    #[command(
        after_help = "Example:\n  webhook-service migrate --config /etc/webhook-service.toml"
    )]
    Migrate {
        /// TOML file with settings.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Mint a JWT shaped like the platform's, signed with JWT_SECRET.
    #[command(
        after_help = "Examples:\n  webhook-service token --dev --user 0f8fad5b-d9cb-469f-a165-70867728950e\n  JWT_SECRET=... webhook-service token --user <uuid> --admin --ttl 15m"
    )]
    Token(serve::TokenArgs),
    /// Receive deliveries locally while developing an endpoint: verify, print, forward.
    #[command(after_help = listen::AFTER_HELP)]
    Listen(listen::ListenArgs),
    /// Publish an event (or an NDJSON batch) the way the platform's services do.
    #[command(after_help = send::AFTER_HELP)]
    Send(send::SendArgs),
    /// Manage webhooks (list, get, create, update, delete, enable, disable, rotate-secret, test, filter-test).
    #[command(subcommand, after_help = client::WEBHOOKS_AFTER_HELP)]
    Webhooks(client::WebhooksCommand),
    /// Read delivery logs, follow them, and retry a delivery.
    #[command(subcommand, after_help = deliveries::DELIVERIES_AFTER_HELP)]
    Deliveries(deliveries::DeliveriesCommand),
    /// Redeliver a webhook's deliveries of a time range.
    #[command(
        after_help = "Example:\n  webhook-service replay wh_01J... --since 24h --status all --dev"
    )]
    Replay(deliveries::ReplayArgs),
    /// Delivery statistics of one webhook or of all visible ones.
    #[command(
        after_help = "Examples:\n  webhook-service stats --dev\n  webhook-service stats wh_01J... --json"
    )]
    Stats(client::StatsArgs),
    /// The event catalogue: types, descriptions and example payloads.
    #[command(after_help = "Example:\n  webhook-service event-types --json")]
    EventTypes {
        #[command(flatten)]
        connection: Connection,
    },
    /// Copy the embedded store while the service runs (SQLite's online backup).
    #[command(after_help = ops::BACKUP_AFTER_HELP)]
    Backup(ops::BackupArgs),
    /// Replace the embedded store with a backup (the service must be stopped).
    #[command(after_help = ops::RESTORE_AFTER_HELP)]
    Restore(ops::RestoreArgs),
    /// Check the configuration, the store, its migrations and the encryption key.
    #[command(after_help = ops::CHECK_AFTER_HELP)]
    Check(ops::CheckArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  webhook-service completions bash > /etc/bash_completion.d/webhook-service\n  webhook-service completions zsh > \"${fpath[1]}/_webhook-service\"\n  webhook-service completions fish > ~/.config/fish/completions/webhook-service.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print a portal link for one user (open it in a browser).
    #[command(
        after_help = "Example:\n  webhook-service portal-link --dev --user u-123 --expires-in 2h"
    )]
    PortalLink(portal_link::PortalLinkArgs),
}

/// Parses the process's arguments; every command's help ends with the exit codes.
pub fn parse() -> Cli {
    let command = with_exit_codes(Cli::command());
    let matches = command.get_matches();
    // The matches come from this very command tree, so they always convert;
    // clap's own error (exit code 2) covers the impossible case anyway.
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `command`'s help text with the exit codes appended (and its subcommands').
fn with_exit_codes(command: clap::Command) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let mut command = command;
    for name in names {
        command = command.mut_subcommand(name, with_exit_codes);
    }
    let text = match command.get_after_help() {
        Some(existing) => format!("{existing}\n\n{EXIT_CODES}"),
        None => EXIT_CODES.to_string(),
    };
    command.after_help(text)
}

/// Runs a parsed command line and maps the outcome to the documented exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args).map_err(CliError::from),
        Command::Migrate { config } => serve::migrate(config).map_err(CliError::from),
        Command::Token(args) => serve::token(args),
        Command::Listen(args) => block_on(listen::run(args)),
        Command::Send(args) => block_on(send::run(args)),
        Command::Webhooks(cmd) => block_on(client::webhooks(cmd)),
        Command::Deliveries(cmd) => block_on(deliveries::deliveries(cmd)),
        Command::Replay(args) => block_on(deliveries::replay(args)),
        Command::Stats(args) => block_on(client::stats(args)),
        Command::EventTypes { connection } => block_on(client::event_types(connection)),
        Command::Backup(args) => ops::backup(args),
        Command::Restore(args) => ops::restore(args),
        Command::Check(args) => block_on(ops::check(args)),
        Command::PortalLink(args) => portal_link::run(args).map_err(CliError::from),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "webhook-service",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The client commands run on a small current-thread runtime: one request at a time.
fn block_on<F: std::future::Future<Output = Result<(), CliError>>>(
    future: F,
) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(anyhow::anyhow!("cannot start the runtime: {e}")))?;
    runtime.block_on(future)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        // Every subcommand: unique names, valid defaults and conflicts.
        super::Cli::command().debug_assert();
    }
}
