//! `deliveries` (list, follow, get, retry) and `replay`: a webhook's
//! delivery log from a terminal.

use std::collections::HashMap;
use std::time::Duration;

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Value, json};
use webhook_domain::timefmt::{format_rfc3339_millis, now_ms};

use super::client::{PAGE, query, since_param, webhook_ids};
use super::connect::Service;
use super::output::outln;
use super::output::{cell, paint, print_fields, print_json, print_table, status_tone};
use super::{CliError, Connection};

pub const DELIVERIES_AFTER_HELP: &str = "\
Examples:
  webhook-service deliveries list --status failed --since 1h --dev
  webhook-service deliveries list --follow --dev          # new deliveries and attempts as they are logged
  webhook-service deliveries get dlv_01J... --dev          # every attempt, with headers and responses
  webhook-service deliveries retry dlv_01J... --dev";

/// How often `--follow` asks for new deliveries. Each round is one request
/// per followed webhook, counted against the user's API rate limit (by
/// default 1000 an hour), so a round trip every 2 s, not faster.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);
/// How long `--follow` waits when the rate limit was reached and the service gave no `Retry-After`.
const RATE_LIMITED_WAIT: Duration = Duration::from_secs(60);

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
