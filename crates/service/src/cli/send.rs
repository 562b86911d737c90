//! `send`: publish one event, or an NDJSON file of events, like a producer.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;

use bytes::Bytes;
use clap::Args;
use http::StatusCode;
use serde_json::{Value, json};
use webhook_domain::event_type::catalogue;

use super::connect::Service;
use super::output::outln;
use super::output::{Tone, paint, print_json};
use super::{CliError, Connection};

pub const AFTER_HELP: &str = "\
Examples:
  webhook-service send user.created --dev --example
  webhook-service send credit.low --user 0f8fad5b-d9cb-469f-a165-70867728950e --data '{\"balance\":8}'
  webhook-service send credit.low --user <uuid> --data @event.json
  echo '{\"balance\":8}' | webhook-service send credit.low --user <uuid> --data -
  webhook-service send --batch events.ndjson --dev
    (one event per line: {\"eventType\":\"user.created\",\"userId\":\"...\",\"data\":{...}})

With the internal secret (--internal-secret, INTERNAL_SERVICE_SECRET or --dev) events go
to /internal/webhooks/trigger and /internal/events/batch; with only an admin token, to
/api/v1/events. Exit code 1 when an event (or any line of a batch) is rejected.";

/// Events per batch request: the service's limit.
const BATCH_CHUNK: usize = 1000;
/// Bytes per batch request, kept under the service's 16 MiB batch body limit.
const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Options of `send`.
#[derive(Args)]
pub struct SendArgs {
    /// Event type, e.g. user.created (see `webhook-service event-types`).
    #[arg(required_unless_present = "batch")]
    event_type: Option<String>,
    /// The user the event concerns (default with --dev: the --as-user id).
    #[arg(long)]
    user: Option<String>,
    /// The event's data: JSON text, @FILE, or - for stdin.
    #[arg(long, conflicts_with = "example")]
    data: Option<String>,
    /// Send the catalogue's example payload of the type.
    #[arg(long)]
    example: bool,
    /// Post an NDJSON file (one event object per line) through the batch route.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["event_type", "data", "example"])]
    batch: Option<PathBuf>,
    #[command(flatten)]
    connection: Connection,
}

pub async fn run(args: SendArgs) -> Result<(), CliError> {
    let service = Service::connect(&args.connection)?;
    match &args.batch {
        Some(path) => send_batch(&service, path).await,
        None => send_one(&service, &args).await,
    }
}

fn read_data(spec: &str) -> Result<String, CliError> {
    if spec == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return Ok(text);
    }
    if let Some(path) = spec.strip_prefix('@') {
        return std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("--data @{path}: cannot read the file: {e}")));
    }
    Ok(spec.to_string())
}

async fn send_one(service: &Service, args: &SendArgs) -> Result<(), CliError> {
    let event_type = args.event_type.clone().unwrap_or_default();
    let data: Value = if args.example {
        let info = catalogue()
            .iter()
            .find(|t| t.name == event_type)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--example: {event_type:?} is not in the catalogue; `webhook-service event-types` lists the types"
                ))
            })?;
        // The catalogue's example is a whole envelope; the event's data is its `data`.
        let mut example: Value = serde_json::from_str(info.example).map_err(anyhow::Error::from)?;
        match example.get_mut("data") {
            Some(data) => data.take(),
            None => example,
        }
    } else {
        match &args.data {
            Some(spec) => {
                let text = read_data(spec)?;
                serde_json::from_str(&text)
                    .map_err(|e| CliError::Usage(format!("--data is not valid JSON: {e}")))?
            }
            None => json!({}),
        }
    };
    let user = args
        .user
        .clone()
        .or_else(|| service.dev_user.clone())
        .ok_or_else(|| {
            CliError::Usage("--user is required (the user id the event concerns)".into())
        })?;
    let event = json!({"eventType": event_type, "userId": user, "data": data});
    let envelope = if service.has_internal_secret() {
        let body = Bytes::from(serde_json::to_vec(&event).map_err(anyhow::Error::from)?);
        let (status, envelope) = service.internal("/internal/webhooks/trigger", body).await?;
        if !status.is_success() {
            return Err(rejected(&envelope, status));
        }
        envelope
    } else {
        service
            .user(http::Method::POST, "/api/v1/events", Some(&event))
            .await?
    };
    let data = &envelope["data"];
    if service.json {
        print_json(data);
        return Ok(());
    }
    let deliveries = data["deliveries"].as_u64().unwrap_or(0);
    let id = data["eventId"].as_str().unwrap_or("?");
    if data["duplicate"].as_bool() == Some(true) {
        outln!("{id} was already stored (duplicate id): not delivered again");
    } else {
        outln!(
            "{} {id} ({event_type}) → {deliveries} deliver{}",
            paint("accepted", Tone::Good),
            if deliveries == 1 { "y" } else { "ies" }
        );
    }
    if deliveries == 0 {
        outln!(
            "{}",
            paint(
                "no active webhook of this user subscribes to this type (register one with `webhook-service listen --dev --register <type>`)",
                Tone::Dim
            )
        );
    }
    Ok(())
}

fn rejected(envelope: &Value, status: StatusCode) -> CliError {
    let mut text = format!(
        "the event was rejected ({}): {}",
        status.as_u16(),
        envelope["error"]["message"].as_str().unwrap_or("")
    );
    for d in envelope["error"]["details"]
        .as_array()
        .into_iter()
        .flatten()
    {
        text.push_str(&format!(
            "\n  {}: {}",
            d["field"].as_str().unwrap_or(""),
            d["message"].as_str().unwrap_or("")
        ));
    }
    CliError::Failed(text)
}

/// One line's fate.
enum LineResult {
    Accepted { event_id: String, deliveries: u64 },
    Rejected(Vec<String>),
}

async fn send_batch(service: &Service, path: &PathBuf) -> Result<(), CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("--batch {}: {e}", path.display())))?;
    // (line number, raw event) of the lines that are JSON; the rest are rejected here.
    let mut results: Vec<(usize, LineResult)> = Vec::new();
    let mut pending: Vec<(usize, &str)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(_)) => pending.push((line_no, line)),
            Ok(_) => results.push((
                line_no,
                LineResult::Rejected(vec!["the line is not a JSON object".into()]),
            )),
            Err(e) => results.push((
                line_no,
                LineResult::Rejected(vec![format!("the line is not JSON: {e}")]),
            )),
        }
    }
    let total = pending.len() + results.len();
    let mut done = results.len();
    let progress = Progress::new(total);
    let mut rest = pending.as_slice();
    while !rest.is_empty() {
        let mut take = 0;
        let mut bytes = 0;
        while take < rest.len() && take < BATCH_CHUNK && bytes + rest[take].1.len() < BATCH_BYTES {
            bytes += rest[take].1.len() + 1;
            take += 1;
        }
        let take = take.max(1);
        let (chunk, tail) = rest.split_at(take);
        rest = tail;
        let body = format!(
            "{{\"events\":[{}]}}",
            chunk.iter().map(|(_, l)| *l).collect::<Vec<_>>().join(",")
        );
        let (status, envelope) = service
            .internal("/internal/events/batch", Bytes::from(body))
            .await?;
        results.extend(chunk_results(chunk, status, &envelope)?);
        done += chunk.len();
        progress.show(done);
    }
    progress.finish();
    results.sort_by_key(|(line, _)| *line);
    let accepted = results
        .iter()
        .filter(|(_, r)| matches!(r, LineResult::Accepted { .. }))
        .count();
    let rejected = results.len() - accepted;
    if service.json {
        let lines: Vec<Value> = results
            .iter()
            .map(|(line, r)| match r {
                LineResult::Accepted {
                    event_id,
                    deliveries,
                } => json!({"line": line, "accepted": true, "eventId": event_id, "deliveries": deliveries}),
                LineResult::Rejected(errors) => {
                    json!({"line": line, "accepted": false, "errors": errors})
                }
            })
            .collect();
        print_json(&json!({"accepted": accepted, "rejected": rejected, "lines": lines}));
    } else {
        let deliveries: u64 = results
            .iter()
            .map(|(_, r)| match r {
                LineResult::Accepted { deliveries, .. } => *deliveries,
                LineResult::Rejected(_) => 0,
            })
            .sum();
        outln!(
            "{} {accepted} events ({deliveries} deliveries), {} {rejected}",
            paint("accepted", Tone::Good),
            paint("rejected", if rejected > 0 { Tone::Bad } else { Tone::Dim })
        );
        for (line, r) in &results {
            if let LineResult::Rejected(errors) = r {
                outln!("line {line}: {}", errors.join("; "));
            }
        }
    }
    if rejected > 0 {
        return Err(CliError::Failed(format!(
            "{rejected} of {} lines were rejected",
            results.len()
        )));
    }
    Ok(())
}

/// Maps a batch answer back to the lines of the chunk.
fn chunk_results(
    chunk: &[(usize, &str)],
    status: StatusCode,
    envelope: &Value,
) -> Result<Vec<(usize, LineResult)>, CliError> {
    let mut out = Vec::with_capacity(chunk.len());
    if status.is_success() {
        for r in envelope["data"]["results"].as_array().into_iter().flatten() {
            let Some((line, _)) = r["index"].as_u64().and_then(|i| chunk.get(i as usize)) else {
                continue;
            };
            if r["success"].as_bool() == Some(true) {
                out.push((
                    *line,
                    LineResult::Accepted {
                        event_id: r["eventId"].as_str().unwrap_or("").to_string(),
                        deliveries: r["deliveries"].as_u64().unwrap_or(0),
                    },
                ));
            } else {
                let errors = r["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["message"].as_str().unwrap_or("").to_string())
                    .collect();
                out.push((*line, LineResult::Rejected(errors)));
            }
        }
        return Ok(out);
    }
    if status != StatusCode::BAD_REQUEST {
        return Err(rejected(envelope, status));
    }
    // No event of the chunk was valid: the details name `events[i].field`.
    let mut errors: Vec<Vec<String>> = vec![Vec::new(); chunk.len()];
    for d in envelope["error"]["details"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let field = d["field"].as_str().unwrap_or("");
        let index = field
            .strip_prefix("events[")
            .and_then(|s| s.split(']').next())
            .and_then(|s| s.parse::<usize>().ok());
        let message = d["message"].as_str().unwrap_or("").to_string();
        match index.and_then(|i| errors.get_mut(i)) {
            Some(list) => list.push(message),
            None => return Err(rejected(envelope, status)),
        }
    }
    for ((line, _), errors) in chunk.iter().zip(errors) {
        out.push((*line, LineResult::Rejected(errors)));
    }
    Ok(out)
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
struct Progress {
    total: usize,
    draw: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Progress {
            total,
            draw: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, done: usize) {
        if !self.draw || self.total == 0 {
            return;
        }
        let width = 30;
        let filled = done * width / self.total;
        eprint!(
            "\r[{}{}] {done}/{} lines",
            "=".repeat(filled),
            " ".repeat(width - filled),
            self.total
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&self) {
        if self.draw {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_all_rejected_chunk_maps_each_problem_to_its_line() {
        let chunk = [(3, "{}"), (7, "{}")];
        let envelope = json!({"success": false, "error": {"code": "VALIDATION_ERROR", "message": "No event",
        "details": [
            {"field": "events[0].eventType", "message": "eventType is required"},
            {"field": "events[1]", "message": "event is not an object"},
            {"field": "events[1].userId", "message": "userId is required"},
        ]}});
        let results = chunk_results(&chunk, StatusCode::BAD_REQUEST, &envelope).expect("mapped");
        let lines: Vec<(usize, Vec<String>)> = results
            .into_iter()
            .map(|(line, r)| match r {
                LineResult::Rejected(errors) => (line, errors),
                LineResult::Accepted { .. } => panic!("nothing was accepted"),
            })
            .collect();
        assert_eq!(
            lines,
            [
                (3, vec!["eventType is required".to_string()]),
                (
                    7,
                    vec![
                        "event is not an object".to_string(),
                        "userId is required".to_string()
                    ]
                ),
            ]
        );
    }

    #[test]
    fn another_error_of_the_batch_route_is_not_taken_for_rejected_lines() {
        let envelope =
            json!({"success": false, "error": {"code": "RATE_LIMITED", "message": "slow down"}});
        assert!(matches!(
            chunk_results(&[(1, "{}")], StatusCode::TOO_MANY_REQUESTS, &envelope),
            Err(CliError::Failed(_))
        ));
    }
}
