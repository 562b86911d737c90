//! Client commands against a running service: `webhooks`, `stats` and
//! `event-types` (deliveries and replay are in `deliveries.rs`). Each is one
//! or a few `/api/v1` calls; the output is a table, or the service's `data`
//! with `--json`.

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Value, json};
use webhook_domain::retry::parse_duration;
use webhook_domain::timefmt::{format_rfc3339_millis, now_ms};

use super::connect::Service;
use super::filter_test;
use super::output::outln;
use super::output::{cell, paint, print_fields, print_json, print_table, status_tone};
use super::webhook_options::{
    CREATE_AFTER_HELP, OPTION_FIELDS, OptionFlags, ResetFlags, Signing, UPDATE_AFTER_HELP,
    apply_signing, option_lines,
};
use super::{CliError, Connection};

pub const WEBHOOKS_AFTER_HELP: &str = "\
Examples:
  webhook-service webhooks list --dev
  webhook-service webhooks create --endpoint https://example.com/hooks --events user.created,credit.* --dev
  webhook-service webhooks update wh_01J... --rate-limit 50 --header 'X-Api-Key: @api-key.txt' --dev
  webhook-service webhooks filter-test --filter '{\"data\":{\"balance\":{\"$lt\":10}}}' --event-type credit.low --dev
  webhook-service webhooks disable wh_01J... --dev
  webhook-service webhooks test wh_01J... --event-type credit.low --dev
  webhook-service webhooks list --json --token \"$WEBHOOK_TOKEN\" --url https://webhooks.example.com";

/// Deliveries listed per webhook and page.
pub const PAGE: u64 = 100;
#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// List the webhooks the token may see.
    #[command(
        after_help = "Example:\n  webhook-service webhooks list --dev\n  webhook-service webhooks list --json --url https://webhooks.example.com --token \"$WEBHOOK_TOKEN\""
    )]
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Show one webhook.
    #[command(after_help = "Example:\n  webhook-service webhooks get wh_01J... --dev")]
    Get {
        /// Webhook id (wh_...).
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Create a webhook; prints its secret once.
    #[command(after_help = CREATE_AFTER_HELP)]
    Create {
        /// Destination URL of the webhook (--url is the service's).
        #[arg(long, value_name = "URL")]
        endpoint: String,
        /// Event types or patterns, comma separated (user.created, credit.*, *).
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        /// Secret (16-128 printable characters); generated when absent.
        #[arg(long)]
        secret: Option<String>,
        /// How deliveries are signed (default hmac).
        #[arg(long, value_enum)]
        signing: Option<Signing>,
        #[command(flatten)]
        options: Box<OptionFlags>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Change a webhook's URL, event types, description or options.
    #[command(after_help = UPDATE_AFTER_HELP)]
    Update {
        /// Webhook id.
        id: String,
        /// New destination URL.
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// New event types, comma separated.
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// New description.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        options: Box<OptionFlags>,
        #[command(flatten)]
        resets: ResetFlags,
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete a webhook and its delivery logs.
    #[command(after_help = "Example:\n  webhook-service webhooks delete wh_01J... --dev")]
    Delete {
        /// Webhook id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Resume deliveries (clears a disable reason).
    #[command(after_help = "Example:\n  webhook-service webhooks enable wh_01J... --dev")]
    Enable {
        /// Webhook id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Stop deliveries.
    #[command(after_help = "Example:\n  webhook-service webhooks disable wh_01J... --dev")]
    Disable {
        /// Webhook id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Replace the secret; the previous one keeps signing during the grace period.
    #[command(after_help = "Example:\n  webhook-service webhooks rotate-secret wh_01J... --dev")]
    RotateSecret {
        /// Webhook id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Try a payload filter on a sample event: prints match or no match.
    #[command(after_help = filter_test::AFTER_HELP)]
    FilterTest(filter_test::FilterTestArgs),
    /// Send a test event to the webhook.
    #[command(
        after_help = "Example:\n  webhook-service webhooks test wh_01J... --event-type credit.low --dev"
    )]
    Test {
        /// Webhook id.
        id: String,
        /// The event type of the test (default: the service's choice).
        #[arg(long)]
        event_type: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
}

/// Options of `stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// One webhook (default: all the token may see).
    webhook: Option<String>,
    /// The window of the rates and latencies (1h, 24h, 7d).
    #[arg(long)]
    window: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// `--since 1h` becomes a timestamp; a timestamp passes as it is.
pub fn since_param(text: &str) -> String {
    match parse_duration(text) {
        Ok(ago) => format_rfc3339_millis(now_ms() - ago.as_millis() as i64),
        Err(_) => text.to_string(),
    }
}

/// `?a=b&c=d`, percent-encoded.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            out.append_pair(k, v);
        }
    }
    let text = out.finish();
    if text.is_empty() {
        text
    } else {
        format!("?{text}")
    }
}

fn webhook_rows(items: &[Value]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|w| {
            let state = if w["isActive"].as_bool() == Some(true) {
                "active"
            } else {
                "disabled"
            };
            vec![
                cell(&w["id"]),
                paint(state, status_tone(state)),
                cell(&w["eventTypes"]),
                cell(&w["url"]),
                cell(&w["description"]),
            ]
        })
        .collect()
}

/// A webhook as `key  value` lines: its own fields, then the options that
/// are set (the others are at the service's defaults and would only be noise).
fn show_webhook(service: &Service, envelope: &Value) {
    let data = &envelope["data"];
    if service.json {
        print_json(data);
        return;
    }
    let Some(fields) = data.as_object() else {
        print_json(data);
        return;
    };
    let mut shown: serde_json::Map<String, Value> = fields
        .iter()
        .filter(|(key, _)| !OPTION_FIELDS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for (label, text) in option_lines(data) {
        shown.insert(label.to_string(), Value::String(text));
    }
    print_fields(&Value::Object(shown));
}

pub async fn webhooks(cmd: WebhooksCommand) -> Result<(), CliError> {
    match cmd {
        WebhooksCommand::List { connection } => {
            let service = Service::connect(&connection)?;
            let items = all_webhooks(&service).await?;
            if service.json {
                print_json(&Value::Array(items));
            } else if items.is_empty() {
                outln!(
                    "no webhooks yet: create one with `webhook-service webhooks create --endpoint URL --events TYPES`"
                );
            } else {
                print_table(
                    &["id", "state", "events", "url", "description"],
                    &webhook_rows(&items),
                );
            }
            Ok(())
        }
        WebhooksCommand::Get { id, connection } => {
            let service = Service::connect(&connection)?;
            let envelope = service
                .user(Method::GET, &format!("/api/v1/webhooks/{id}"), None)
                .await?;
            show_webhook(&service, &envelope);
            Ok(())
        }
        WebhooksCommand::Create {
            endpoint: url,
            events,
            description,
            secret,
            signing,
            options,
            connection,
        } => {
            let mut body = serde_json::Map::new();
            body.insert("url".into(), json!(url));
            body.insert("eventTypes".into(), json!(events));
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            if let Some(s) = secret {
                body.insert("secret".into(), json!(s));
            }
            apply_signing(signing, &mut body);
            options
                .apply(&mut body)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let service = Service::connect(&connection)?;
            let envelope = service
                .user(Method::POST, "/api/v1/webhooks", Some(&Value::Object(body)))
                .await?;
            show_webhook(&service, &envelope);
            Ok(())
        }
        WebhooksCommand::Update {
            id,
            endpoint: url,
            events,
            description,
            options,
            resets,
            connection,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(u) = url {
                body.insert("url".into(), json!(u));
            }
            if let Some(e) = events {
                body.insert("eventTypes".into(), json!(e));
            }
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            options
                .apply(&mut body)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            resets.apply(&mut body);
            if body.is_empty() {
                return Err(CliError::Usage(
                    "nothing to change: pass --endpoint, --events, --description or an option \
                     (`webhook-service webhooks update --help` lists them)"
                        .into(),
                ));
            }
            let service = Service::connect(&connection)?;
            let envelope = service
                .user(
                    Method::PATCH,
                    &format!("/api/v1/webhooks/{id}"),
                    Some(&Value::Object(body)),
                )
                .await?;
            show_webhook(&service, &envelope);
            Ok(())
        }
        WebhooksCommand::Delete { id, connection } => {
            let service = Service::connect(&connection)?;
            let envelope = service
                .user(Method::DELETE, &format!("/api/v1/webhooks/{id}"), None)
                .await?;
            if service.json {
                print_json(&envelope["data"]);
            } else {
                outln!("deleted {id}");
            }
            Ok(())
        }
        WebhooksCommand::FilterTest(args) => filter_test::run(args).await,
        WebhooksCommand::Enable { id, connection } => toggle(id, connection, true).await,
        WebhooksCommand::Disable { id, connection } => toggle(id, connection, false).await,
        WebhooksCommand::RotateSecret { id, connection } => {
            let service = Service::connect(&connection)?;
            let envelope = service
                .user(
                    Method::POST,
                    &format!("/api/v1/webhooks/{id}/rotate-secret"),
                    None,
                )
                .await?;
            show_webhook(&service, &envelope);
            Ok(())
        }
        WebhooksCommand::Test {
            id,
            event_type,
            connection,
        } => {
            let service = Service::connect(&connection)?;
            let body = event_type.map(|t| json!({"eventType": t}));
            let envelope = service
                .user(
                    Method::POST,
                    &format!("/api/v1/webhooks/{id}/test"),
                    body.as_ref(),
                )
                .await?;
            let data = &envelope["data"];
            if service.json {
                print_json(data);
            } else {
                print_fields(data);
            }
            // The service answers 200 whatever the endpoint did; the exit code tells.
            if data["success"].as_bool() == Some(false) {
                return Err(CliError::Failed(format!(
                    "the endpoint did not accept the test event ({})",
                    match &data["statusCode"] {
                        Value::Null => cell(&data["error"]),
                        code => format!("status {code}"),
                    }
                )));
            }
            Ok(())
        }
    }
}

async fn toggle(id: String, connection: Connection, active: bool) -> Result<(), CliError> {
    let service = Service::connect(&connection)?;
    let envelope = service
        .user(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/toggle"),
            Some(&json!({"isActive": active})),
        )
        .await?;
    if service.json {
        print_json(&envelope["data"]);
    } else {
        outln!("{id} {}", if active { "enabled" } else { "disabled" });
    }
    Ok(())
}

/// Every webhook the token may see, all pages.
pub async fn all_webhooks(service: &Service) -> Result<Vec<Value>, CliError> {
    let mut items = Vec::new();
    for page in 1.. {
        let envelope = service
            .user(
                Method::GET,
                &format!("/api/v1/webhooks?page={page}&limit={PAGE}"),
                None,
            )
            .await?;
        let batch = envelope["data"].as_array().cloned().unwrap_or_default();
        let done = (batch.len() as u64) < PAGE;
        items.extend(batch);
        if done {
            break;
        }
    }
    Ok(items)
}

/// The ids of the webhooks a delivery command looks at.
pub async fn webhook_ids(service: &Service, only: Option<&str>) -> Result<Vec<String>, CliError> {
    match only {
        Some(id) => Ok(vec![id.to_string()]),
        None => Ok(all_webhooks(service)
            .await?
            .iter()
            .filter_map(|w| w["id"].as_str().map(str::to_string))
            .collect()),
    }
}

pub async fn stats(args: StatsArgs) -> Result<(), CliError> {
    let service = Service::connect(&args.connection)?;
    let q = query(&[("window", args.window.clone())]);
    let path = match &args.webhook {
        Some(id) => format!("/api/v1/webhooks/{id}/stats{q}"),
        None => format!("/api/v1/webhooks/stats{q}"),
    };
    let envelope = service.user(Method::GET, &path, None).await?;
    let data = &envelope["data"];
    if service.json {
        print_json(data);
        return Ok(());
    }
    // Nested objects (the window's rates and latencies) as `window.rate` lines.
    let mut flat = serde_json::Map::new();
    flatten("", data, &mut flat);
    print_fields(&Value::Object(flat));
    Ok(())
}

fn flatten(prefix: &str, value: &Value, out: &mut serde_json::Map<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

pub async fn event_types(connection: Connection) -> Result<(), CliError> {
    let service = Service::connect(&connection)?;
    let envelope = service.public("/api/v1/event-types").await?;
    let data = &envelope["data"];
    if service.json {
        print_json(data);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = data
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                cell(&t["type"]),
                cell(&t["service"]),
                cell(&t["description"]),
            ]
        })
        .collect();
    print_table(&["type", "emitted by", "description"], &rows);
    Ok(())
}
