//! Operations on a deployment: `backup`, `restore` and `check`.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use webhook_service::config::{Config, Settings};
use webhook_service::crypto::SecretCipher;
use webhook_service::devmode;
use webhook_service::store::postgres::PostgresStore;
use webhook_service::store::sqlite::backup;

use super::CliError;
use super::output::outln;
use super::output::{Tone, paint, print_json};

pub const BACKUP_AFTER_HELP: &str = "\
Examples:
  webhook-service backup --to /backups/webhooks-$(date +%F).db
  WEBHOOK_DATA_DIR=/var/lib/webhook-service webhook-service backup --to copy.db

The copy is consistent (the store as of one commit) and taken while the service
runs. With DATABASE_URL (PostgreSQL) use pg_dump instead.";

pub const RESTORE_AFTER_HELP: &str = "\
Example:
  webhook-service restore --from /backups/webhooks-2026-01-31.db --force

Stop the service first: restore refuses a data directory a service is using.";

pub const CHECK_AFTER_HELP: &str = "\
Examples:
  webhook-service check --config /etc/webhook-service.toml
  webhook-service check --dev --json

Checks that the configuration is valid, the store is reachable and migrated, and the
encryption key opens every stored webhook secret. Exit code 1 when a check fails.";

/// Options of `backup`.
#[derive(Args)]
pub struct BackupArgs {
    /// The file to write (replaced if it exists).
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    /// TOML file with settings.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `restore`.
#[derive(Args)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// Replace an existing store.
    #[arg(long)]
    force: bool,
    /// TOML file with settings.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Options of `check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Check as `serve --dev` runs (its generated secrets count as set).
    #[arg(long)]
    dev: bool,
    /// TOML file with settings.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn load(config: Option<&std::path::Path>, dev: bool) -> Result<Config, CliError> {
    let settings = Settings::load(config).map_err(|e| CliError::Failed(e.to_string()))?;
    Config::from_settings(&settings, dev).map_err(|e| CliError::Failed(e.to_string()))
}

fn file_op(e: backup::FileOpError) -> CliError {
    CliError::Failed(e.to_string())
}

pub fn backup(args: BackupArgs) -> Result<(), CliError> {
    let config = load(args.config.as_deref(), true)?;
    if config.database_url.is_some() {
        return Err(CliError::Usage(
            "DATABASE_URL names PostgreSQL: back it up with pg_dump (e.g. `pg_dump -Fc \"$DATABASE_URL\" > webhooks.dump`)"
                .into(),
        ));
    }
    let report = backup::backup(&config.data_dir, &args.to).map_err(file_op)?;
    if args.json {
        print_json(
            &json!({"file": args.to.display().to_string(), "pages": report.pages, "bytes": report.bytes}),
        );
    } else {
        outln!(
            "backed up {} to {} ({} KiB)",
            config.data_dir.display(),
            args.to.display(),
            report.bytes / 1024
        );
    }
    Ok(())
}

pub fn restore(args: RestoreArgs) -> Result<(), CliError> {
    let config = load(args.config.as_deref(), true)?;
    if config.database_url.is_some() {
        return Err(CliError::Usage(
            "DATABASE_URL names PostgreSQL: restore it with pg_restore".into(),
        ));
    }
    backup::restore(&config.data_dir, &args.from, args.force).map_err(file_op)?;
    outln!(
        "restored {} into {}",
        args.from.display(),
        config.data_dir.display()
    );
    Ok(())
}

pub async fn check(args: CheckArgs) -> Result<(), CliError> {
    let mut results: Vec<(&str, bool, String)> = Vec::new();
    let config = match load(args.config.as_deref(), args.dev) {
        Ok(mut config) => {
            if args.dev {
                // The secrets `serve --dev` would use: generated ones, if any.
                if devmode::secrets_path(&config.data_dir).is_file() {
                    devmode::fill_missing(&mut config).map_err(anyhow::Error::from)?;
                }
            }
            results.push(("configuration", true, "valid".to_string()));
            Some(config)
        }
        Err(e) => {
            results.push(("configuration", false, e.to_string()));
            None
        }
    };
    if let Some(config) = &config {
        let cipher = config.encryption_key.as_ref().map(SecretCipher::new);
        let (location, checked) = match &config.database_url {
            Some(url) => (
                "the PostgreSQL database of DATABASE_URL".to_string(),
                PostgresStore::check(url.expose(), cipher.as_ref())
                    .await
                    .map_err(|e| e.to_string()),
            ),
            None => (
                config.data_dir.join("webhooks.db").display().to_string(),
                backup::check(&config.data_dir, cipher.as_ref()).map_err(|e| e.to_string()),
            ),
        };
        match checked {
            Ok(report) => {
                let migrated = report.applied >= report.known;
                results.push((
                    "store",
                    migrated,
                    format!(
                        "{}: {} of {} migrations applied{}",
                        location,
                        report.applied,
                        report.known,
                        if migrated {
                            ""
                        } else {
                            " (run `webhook-service migrate`)"
                        }
                    ),
                ));
                match &cipher {
                        None => results.push((
                            "encryption key",
                            false,
                            "WEBHOOK_ENCRYPTION_KEY is not set".to_string(),
                        )),
                        Some(_) if report.secrets_failed.is_empty() => results.push((
                            "encryption key",
                            true,
                            format!("opens all {} stored secrets", report.secrets_opened),
                        )),
                        Some(_) => results.push((
                            "encryption key",
                            false,
                            format!(
                                "does not open the secrets of {} webhooks ({}); is it the key they were stored with?",
                                report.secrets_failed.len(),
                                report.secrets_failed.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                            ),
                        )),
                    }
            }
            Err(e) => results.push(("store", false, format!("{location}: {e}"))),
        }
    }
    let ok = results.iter().all(|(_, passed, _)| *passed);
    if args.json {
        let checks: Vec<_> = results
            .iter()
            .map(|(name, passed, detail)| json!({"check": name, "ok": passed, "detail": detail}))
            .collect();
        print_json(&json!({"ok": ok, "checks": checks}));
    } else {
        for (name, passed, detail) in &results {
            let mark = if *passed {
                paint("✓", Tone::Good)
            } else {
                paint("✗", Tone::Bad)
            };
            outln!("{mark} {name}: {detail}");
        }
    }
    if ok {
        Ok(())
    } else {
        Err(CliError::Failed("a check failed".into()))
    }
}
