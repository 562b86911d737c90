//! `serve`, `migrate` and `token`: the service itself and its set-up commands.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use webhook_domain::ids::UserId;
use webhook_domain::retry::parse_duration;
use webhook_service::config::{Config, Settings};
use webhook_service::store::sqlite::backup;
use webhook_service::{auth, devmode, server, telemetry};

use super::CliError;
use super::output::outln;

/// Options of `serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Local development: generated secrets, http and loopback destinations allowed, pretty logs,
    /// one line per delivery attempt on the terminal.
    #[arg(long)]
    dev: bool,
    /// Listen port (overrides PORT).
    #[arg(long)]
    port: Option<u16>,
    /// Listen address (overrides HOST).
    #[arg(long)]
    host: Option<IpAddr>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
    /// TOML file with settings (keys are the environment variable names).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Options of `token`.
#[derive(Args)]
pub struct TokenArgs {
    /// User id (the token's userId claim; the platform's ids are UUIDs).
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
}

/// The loopback ranges `--dev` allows as destinations besides WEBHOOK_ALLOWED_CIDRS.
const DEV_LOOPBACK: [&str; 2] = ["127.0.0.0/8", "::1/128"];

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args.config.as_deref())?;
    let mut config = Config::from_settings(&settings, args.dev)?;
    if let Some(port) = args.port {
        config.port = port;
    }
    if let Some(host) = args.host {
        config.host = host;
    }
    if args.dev {
        // Before printing too: `--print-config` shows what `serve --dev` runs with.
        let generated = devmode::fill_missing(&mut config)?;
        if !generated.is_empty() && !args.print_config {
            eprintln!(
                "--dev: using generated {} kept in {}",
                generated.join(", "),
                devmode::secrets_path(&config.data_dir).display()
            );
        }
    }
    if args.print_config {
        let mut shown = config.redacted();
        if args.dev
            && let Some(cidrs) = shown.get_mut("allowedCidrs").and_then(|v| v.as_array_mut())
        {
            cidrs.extend(DEV_LOOPBACK.iter().map(|c| serde_json::json!(c)));
        }
        outln!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(());
    }
    let filter = if args.dev {
        // A developer watching a local run sees each attempt's outcome.
        // (A bare level is widened as telemetry::init widens it, so that
        // adding a directive does not turn dependencies' logs on.)
        let level = &config.log_level;
        let base = if level.contains('=') || level.contains(',') {
            level.clone()
        } else {
            format!("warn,webhook_service={level},webhook_outbound={level}")
        };
        format!(
            "{base},{}=debug",
            webhook_service::engine::DELIVERY_LOG_TARGET
        )
    } else {
        config.log_level.clone()
    };
    telemetry::init(&filter, config.log_format);
    if args.dev {
        eprintln!(
            "--dev: receive deliveries with `webhook-service listen --dev --register user.created`,\n\
             --dev: send an event with `webhook-service send user.created --dev --example`,\n\
             --dev: mint a token with `webhook-service token --dev --user <user-id> [--admin]`,\n\
             --dev: or a portal link with `webhook-service portal-link --dev --user <user-id> [--admin]`"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(server::run(config))
}

pub fn migrate(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    let config = Config::from_settings(&settings, true)?;
    if let Some(url) = &config.database_url {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let applied = runtime.block_on(
            webhook_service::store::postgres::PostgresStore::migrate_only(url.expose()),
        )?;
        outln!("{applied} migrations applied in the PostgreSQL database of DATABASE_URL");
        return Ok(());
    }
    let plan = backup::migration_plan(&config.data_dir).ok();
    let progress = plan
        .as_ref()
        .filter(|p| !p.pending.is_empty() && p.rows > 0)
        .map(|p| {
            eprintln!(
                "applying migrations {:?} to {} ({} rows, {} MiB); a table rebuild copies every row",
                p.pending,
                config.data_dir.display(),
                p.rows,
                p.bytes / (1024 * 1024)
            );
            MigrateProgress::start(backup::wal_path(&config.data_dir), p.bytes)
        });
    let result = webhook_service::store::sqlite::SqliteStore::migrate_only(&config.data_dir);
    if let Some(progress) = progress {
        progress.finish();
    }
    let applied = result?;
    outln!(
        "{applied} migrations applied in {}",
        config.data_dir.display()
    );
    Ok(())
}

/// A progress bar with an estimate of the time left, on stderr while a
/// migration runs (only on a terminal). A table rebuild writes about as many
/// pages as the store holds, all through the write-ahead log, so the log's
/// size over the store's is the share done; the estimate extrapolates the
/// rate so far.
struct MigrateProgress {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MigrateProgress {
    fn start(wal: PathBuf, expected_bytes: u64) -> Self {
        use std::io::{IsTerminal as _, Write as _};
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return MigrateProgress { done, thread: None };
        }
        let flag = done.clone();
        let started = std::time::Instant::now();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let written = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                let share = (written as f64 / expected_bytes.max(1) as f64).min(0.99);
                let elapsed = started.elapsed().as_secs_f64();
                let left = if share > 0.02 {
                    format!("~{:.0} s left", elapsed / share - elapsed)
                } else {
                    "estimating".to_string()
                };
                let width = 30;
                let filled = (share * width as f64) as usize;
                eprint!(
                    "\r[{}{}] {:>3.0}%  {elapsed:.0} s, {left}   ",
                    "=".repeat(filled),
                    " ".repeat(width - filled),
                    share * 100.0
                );
                let _ = std::io::stderr().flush();
                std::thread::sleep(Duration::from_millis(500));
            }
            eprintln!();
        });
        MigrateProgress {
            done,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether `text` is a UUID in its usual hyphenated form.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub fn token(args: TokenArgs) -> Result<(), CliError> {
    let user = UserId::parse(&args.user)
        .map_err(|e| CliError::Usage(format!("--user {:?}: {}", args.user, e.reason)))?;
    if !is_uuid(user.as_str()) {
        // Accepted (events may carry any user id), but a token for a user id the
        // platform never emits sees no platform event: say so instead of staying silent.
        eprintln!(
            "warning: --user {:?} is not a UUID; the platform's user ids are UUIDs, so its events will not match this token's user",
            user.as_str()
        );
    }
    let settings = Settings::load(args.config.as_deref()).map_err(anyhow::Error::from)?;
    let config = Config::from_settings(&settings, true).map_err(anyhow::Error::from)?;
    let ttl: Duration =
        parse_duration(&args.ttl).map_err(|e| CliError::Usage(format!("--ttl: {e}")))?;
    let secret = match (&config.jwt.secret, args.dev) {
        // `serve --dev` also prefers a configured JWT_SECRET over the generated one.
        (Some(secret), _) => secret.clone(),
        (None, true) => devmode::jwt_secret(&config.data_dir).map_err(anyhow::Error::from)?,
        (None, false) => {
            return Err(CliError::Usage(
                "JWT_SECRET is not set (use --dev for the secret of `serve --dev`)".into(),
            ));
        }
    };
    let token = auth::mint_token(
        &secret,
        user.as_str(),
        args.email.as_deref(),
        args.admin,
        ttl,
    )
    .map_err(anyhow::Error::from)?;
    outln!("{token}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_uuid;

    #[test]
    fn uuids_are_recognised_in_their_hyphenated_form_only() {
        assert!(is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(is_uuid("0F8FAD5B-D9CB-469F-A165-70867728950E"));
        assert!(!is_uuid("not-a-uuid"));
        assert!(!is_uuid("0f8fad5bd9cb469fa16570867728950e"));
        assert!(!is_uuid("0f8fad5b-d9cb-469f-a165-70867728950g"));
    }
}
