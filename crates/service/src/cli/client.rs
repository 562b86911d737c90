//! Client commands against a running service: `webhooks`, `deliveries`,
//! `replay`, `stats` and `event-types`. Each is one or a few `/api/v1`
//! calls; the output is a table, or the service's `data` with `--json`.

use std::collections::HashMap;
use std::time::Duration;

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Value, json};
use webhook_domain::retry::parse_duration;
use webhook_domain::timefmt::{format_rfc3339_millis, now_ms};

use super::connect::Service;
use super::output::outln;
use super::output::{cell, paint, print_fields, print_json, print_table, status_tone};
use super::{CliError, Connection};

pub const WEBHOOKS_AFTER_HELP: &str = "\
Examples:
  webhook-service webhooks list --dev
  webhook-service webhooks create --endpoint https://example.com/hooks --events user.created,credit.* --dev
  webhook-service webhooks disable wh_01J... --dev
  webhook-service webhooks test wh_01J... --event-type credit.low --dev
  webhook-service webhooks list --json --token \"$WEBHOOK_TOKEN\" --url http://10.0.0.5:3005";

pub const DELIVERIES_AFTER_HELP: &str = "\
Examples:
  webhook-service deliveries list --status failed --since 1h --dev
  webhook-service deliveries list --follow --dev          # new deliveries and attempts as they are logged
  webhook-service deliveries get dlv_01J... --dev          # every attempt, with headers and responses
  webhook-service deliveries retry dlv_01J... --dev";

/// Deliveries listed per webhook and page.
const PAGE: u64 = 100;
/// How often `--follow` asks for new deliveries. Each round is one request
/// per followed webhook, counted against the user's API rate limit (by
/// default 1000 an hour), so a round trip every 2 s, not faster.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);
/// How long `--follow` waits when the rate limit was reached and the service gave no `Retry-After`.
const RATE_LIMITED_WAIT: Duration = Duration::from_secs(60);

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// List the webhooks the token may see.
    #[command(
        after_help = "Example:\n  webhook-service webhooks list --dev\n  webhook-service webhooks list --json --url http://10.0.0.5:3005 --token \"$WEBHOOK_TOKEN\""
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
    #[command(
        after_help = "Example:\n  webhook-service webhooks create --endpoint https://example.com/hooks --events user.created,credit.* --dev"
    )]
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
        #[command(flatten)]
        connection: Connection,
    },
    /// Change a webhook's URL, event types or description.
    #[command(
        after_help = "Example:\n  webhook-service webhooks update wh_01J... --events 'user.*' --dev"
    )]
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

#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, newest first (of one webhook, or of all visible ones).
    #[command(
        after_help = "Example:\n  webhook-service deliveries list --status failed --since 1h --dev\n  webhook-service deliveries list --follow --dev"
    )]
    List(ListArgs),
    /// Show a delivery with every attempt.
    #[command(after_help = "Example:\n  webhook-service deliveries get dlv_01J... --dev")]
    Get {
        /// Delivery id (dlv_...).
        id: String,
        /// Its webhook (found among yours when absent).
        #[arg(long)]
        webhook: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Deliver again now.
    #[command(after_help = "Example:\n  webhook-service deliveries retry dlv_01J... --dev")]
    Retry {
        /// Delivery id (dlv_...).
        id: String,
        /// Its webhook (found among yours when absent).
        #[arg(long)]
        webhook: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
}

/// Options of `deliveries list`.
#[derive(Args)]
pub struct ListArgs {
    /// Only this webhook's deliveries.
    #[arg(long)]
    webhook: Option<String>,
    /// pending, retrying, delivered or failed.
    #[arg(long)]
    status: Option<String>,
    /// Only this event type.
    #[arg(long)]
    event_type: Option<String>,
    /// Created within this long (30m, 1h, 7d) or since this time (ISO 8601).
    #[arg(long)]
    since: Option<String>,
    /// Most deliveries shown.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Keep running and print deliveries (and their new attempts) as they are logged.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    connection: Connection,
}

/// Options of `replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// Webhook id.
    webhook: String,
    /// Deliveries created within this long (24h) or since this time (ISO 8601).
    #[arg(long)]
    since: String,
    /// Created before this time.
    #[arg(long)]
    until: Option<String>,
    /// failed (the service's default), delivered, retrying, pending or all.
    #[arg(long)]
    status: Option<String>,
    #[command(flatten)]
    connection: Connection,
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
fn since_param(text: &str) -> String {
    match parse_duration(text) {
        Ok(ago) => format_rfc3339_millis(now_ms() - ago.as_millis() as i64),
        Err(_) => text.to_string(),
    }
}

/// `?a=b&c=d`, percent-encoded.
fn query(pairs: &[(&str, Option<String>)]) -> String {
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

fn show_webhook(service: &Service, envelope: &Value) {
    let data = &envelope["data"];
    if service.json {
        print_json(data);
    } else {
        print_fields(data);
    }
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
            connection,
        } => {
            let service = Service::connect(&connection)?;
            let mut body = json!({"url": url, "eventTypes": events});
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if let Some(s) = secret {
                body["secret"] = json!(s);
            }
            let envelope = service
                .user(Method::POST, "/api/v1/webhooks", Some(&body))
                .await?;
            show_webhook(&service, &envelope);
            Ok(())
        }
        WebhooksCommand::Update {
            id,
            endpoint: url,
            events,
            description,
            connection,
        } => {
            let service = Service::connect(&connection)?;
            let mut body = json!({});
            if let Some(u) = url {
                body["url"] = json!(u);
            }
            if let Some(e) = events {
                body["eventTypes"] = json!(e);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if body.as_object().is_some_and(|o| o.is_empty()) {
                return Err(CliError::Usage(
                    "nothing to change: pass --endpoint, --events or --description".into(),
                ));
            }
            let envelope = service
                .user(
                    Method::PATCH,
                    &format!("/api/v1/webhooks/{id}"),
                    Some(&body),
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
async fn all_webhooks(service: &Service) -> Result<Vec<Value>, CliError> {
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
async fn webhook_ids(service: &Service, only: Option<&str>) -> Result<Vec<String>, CliError> {
    match only {
        Some(id) => Ok(vec![id.to_string()]),
        None => Ok(all_webhooks(service)
            .await?
            .iter()
            .filter_map(|w| w["id"].as_str().map(str::to_string))
            .collect()),
    }
}

/// The newest deliveries matching `args`, across the webhooks, newest first.
async fn newest_deliveries(
    service: &Service,
    webhooks: &[String],
    args: &ListArgs,
    since: Option<String>,
) -> Result<Vec<Value>, CliError> {
    let q = query(&[
        ("status", args.status.clone()),
        ("eventType", args.event_type.clone()),
        ("since", since),
        (
            "limit",
            Some(args.limit.clamp(1, PAGE as usize).to_string()),
        ),
    ]);
    let mut all = Vec::new();
    for id in webhooks {
        let envelope = service
            .user(
                Method::GET,
                &format!("/api/v1/webhooks/{id}/deliveries{q}"),
                None,
            )
            .await?;
        all.extend(envelope["data"].as_array().cloned().unwrap_or_default());
    }
    // Ids are ULIDs: their order is their creation order.
    all.sort_by(|a, b| b["id"].as_str().cmp(&a["id"].as_str()));
    all.truncate(args.limit);
    Ok(all)
}

fn delivery_row(d: &Value) -> Vec<String> {
    let status = d["status"].as_str().unwrap_or("-");
    vec![
        cell(&d["createdAt"]),
        cell(&d["id"]),
        cell(&d["eventType"]),
        cell(&d["webhookId"]),
        paint(status, status_tone(status)),
        cell(&d["attempts"]),
        cell(&d["lastStatusCode"]),
        cell(&d["lastError"]),
    ]
}

const DELIVERY_HEADERS: [&str; 8] = [
    "created", "id", "event", "webhook", "status", "attempts", "code", "error",
];

pub async fn deliveries(cmd: DeliveriesCommand) -> Result<(), CliError> {
    match cmd {
        DeliveriesCommand::List(args) => list_deliveries(args).await,
        DeliveriesCommand::Get {
            id,
            webhook,
            connection,
        } => {
            let service = Service::connect(&connection)?;
            let (_, envelope) = find_delivery(&service, &id, webhook.as_deref()).await?;
            let data = &envelope["data"];
            if service.json {
                print_json(data);
                return Ok(());
            }
            let summary: serde_json::Map<String, Value> = data
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| k.as_str() != "attemptLog" && k.as_str() != "event")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            print_fields(&Value::Object(summary));
            let attempts = data["attemptLog"].as_array().cloned().unwrap_or_default();
            outln!();
            let rows: Vec<Vec<String>> = attempts
                .iter()
                .map(|a| {
                    let code = cell(&a["statusCode"]);
                    vec![
                        cell(&a["attempt"]),
                        cell(&a["startedAt"]),
                        cell(&a["durationMs"]),
                        paint(&code, status_tone(&code)),
                        cell(&a["errorKind"]),
                        cell(&a["errorMessage"]),
                    ]
                })
                .collect();
            print_table(
                &["attempt", "started", "ms", "code", "error kind", "error"],
                &rows,
            );
            Ok(())
        }
        DeliveriesCommand::Retry {
            id,
            webhook,
            connection,
        } => {
            let service = Service::connect(&connection)?;
            let (webhook, _) = find_delivery(&service, &id, webhook.as_deref()).await?;
            let envelope = service
                .user(
                    Method::POST,
                    &format!("/api/v1/webhooks/{webhook}/deliveries/{id}/retry"),
                    None,
                )
                .await?;
            if service.json {
                print_json(&envelope["data"]);
            } else {
                outln!("{id} queued for redelivery");
            }
            Ok(())
        }
    }
}

/// The delivery `id` and its webhook: the given one, or the first of the
/// caller's webhooks that has it (the API addresses deliveries under their webhook).
async fn find_delivery(
    service: &Service,
    id: &str,
    webhook: Option<&str>,
) -> Result<(String, Value), CliError> {
    let candidates = webhook_ids(service, webhook).await?;
    let mut last_error = None;
    for wh in &candidates {
        match service
            .user(
                Method::GET,
                &format!("/api/v1/webhooks/{wh}/deliveries/{id}"),
                None,
            )
            .await
        {
            Ok(envelope) => return Ok((wh.clone(), envelope)),
            Err(CliError::Service(e)) => last_error = Some(CliError::Service(e)),
            Err(other) => return Err(other),
        }
    }
    Err(match (webhook, last_error) {
        (Some(_), Some(e)) => e,
        _ => CliError::Service(format!(
            "no delivery {id} among the {} webhooks this token may see",
            candidates.len()
        )),
    })
}

async fn list_deliveries(args: ListArgs) -> Result<(), CliError> {
    let service = Service::connect(&args.connection)?;
    let since = args.since.as_deref().map(since_param);
    let webhooks = webhook_ids(&service, args.webhook.as_deref()).await?;
    let items = newest_deliveries(&service, &webhooks, &args, since.clone()).await?;
    if !args.follow {
        if service.json {
            print_json(&Value::Array(items));
        } else if items.is_empty() {
            outln!("no deliveries match");
        } else {
            let rows: Vec<Vec<String>> = items.iter().map(delivery_row).collect();
            print_table(&DELIVERY_HEADERS, &rows);
        }
        return Ok(());
    }
    follow(&service, &args, items, since).await
}

/// Prints each delivery when it first appears and again whenever its
/// status or attempt count changes, until Ctrl-C.
async fn follow(
    service: &Service,
    args: &ListArgs,
    initial: Vec<Value>,
    since: Option<String>,
) -> Result<(), CliError> {
    let mut seen: HashMap<String, (String, u64)> = HashMap::new();
    let key = |d: &Value| {
        (
            d["status"].as_str().unwrap_or("").to_string(),
            d["attempts"].as_u64().unwrap_or(0),
        )
    };
    let print = |d: &Value| {
        if service.json {
            outln!("{d}");
        } else {
            let status = d["status"].as_str().unwrap_or("-");
            outln!(
                "{}  {}  {}  {}  {}  attempts {}  {}",
                cell(&d["updatedAt"]),
                cell(&d["id"]),
                cell(&d["eventType"]),
                cell(&d["webhookId"]),
                paint(status, status_tone(status)),
                cell(&d["attempts"]),
                match &d["lastStatusCode"] {
                    Value::Null => cell(&d["lastError"]),
                    code => cell(code),
                }
            );
        }
    };
    // Oldest first, as a log reads.
    for d in initial.iter().rev() {
        print(d);
        seen.insert(cell(&d["id"]), key(d));
    }
    // On stderr even with --json: scripts may wait for it before producing events.
    eprintln!("following new deliveries (Ctrl-C to stop)");
    // The start of the watch, so that new deliveries are never crowded out by old ones.
    let watch_since = since.unwrap_or_else(|| format_rfc3339_millis(now_ms() - 60_000));
    let stop = super::listen::shutdown_signal();
    tokio::pin!(stop);
    let mut webhooks = webhook_ids(service, args.webhook.as_deref()).await?;
    let mut rounds = 0u32;
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
        rounds += 1;
        if args.webhook.is_none() && rounds.is_multiple_of(10) {
            // Webhooks created while following are followed too.
            match webhook_ids(service, None).await {
                Ok(ids) => webhooks = ids,
                Err(CliError::RateLimited {
                    retry_after_secs, ..
                }) => {
                    wait_for_rate_limit(retry_after_secs).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        let wide = ListArgs {
            webhook: None,
            status: args.status.clone(),
            event_type: args.event_type.clone(),
            since: None,
            limit: PAGE as usize,
            follow: true,
            connection: args.connection.clone(),
        };
        let items =
            match newest_deliveries(service, &webhooks, &wide, Some(watch_since.clone())).await {
                Ok(items) => items,
                Err(CliError::RateLimited {
                    retry_after_secs, ..
                }) => {
                    wait_for_rate_limit(retry_after_secs).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
        for d in items.iter().rev() {
            let id = cell(&d["id"]);
            let now = key(d);
            if seen.get(&id) != Some(&now) {
                print(d);
                seen.insert(id, now);
            }
        }
    }
}

/// A follow outlives a rate-limit window: it says so and waits instead of ending.
async fn wait_for_rate_limit(retry_after_secs: Option<u64>) {
    let wait = retry_after_secs
        .map(Duration::from_secs)
        .unwrap_or(RATE_LIMITED_WAIT);
    eprintln!(
        "the service's rate limit was reached (RATE_LIMIT_MAX_REQUESTS); following resumes in {} s",
        wait.as_secs()
    );
    tokio::time::sleep(wait).await;
}

pub async fn replay(args: ReplayArgs) -> Result<(), CliError> {
    let service = Service::connect(&args.connection)?;
    let mut body = json!({"since": since_param(&args.since)});
    if let Some(until) = &args.until {
        body["until"] = json!(since_param(until));
    }
    if let Some(status) = &args.status {
        body["status"] = json!(status);
    }
    let envelope = service
        .user(
            Method::POST,
            &format!("/api/v1/webhooks/{}/replay", args.webhook),
            Some(&body),
        )
        .await?;
    if service.json {
        print_json(&envelope["data"]);
    } else {
        outln!(
            "{} deliveries of {} queued for redelivery",
            cell(&envelope["data"]["replayed"]),
            args.webhook
        );
    }
    Ok(())
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
