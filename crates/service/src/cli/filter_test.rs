//! `webhooks filter-test`: whether a payload filter matches a sample event.
//! The service answers (`POST /api/v1/webhooks/filter-test`), so the verdict
//! is the delivery engine's own and a bad filter is explained the way a
//! create or update would explain it.

use clap::Args;
use http::Method;
use serde_json::{Value, json};
use webhook_domain::event_type::catalogue;

use super::connect::Service;
use super::output::{Tone, outln, paint, print_json};
use super::webhook_options::json_document;
use super::{CliError, Connection};

/// The end of `webhooks filter-test --help`.
pub const AFTER_HELP: &str = "\
Examples:
  webhook-service webhooks filter-test --filter '{\"data\":{\"balance\":{\"$lt\":10}}}' --event-type credit.low --dev
  webhook-service webhooks filter-test --filter @filter.json --event @event.json --dev

The event is an envelope (id, eventType, userId, data, metadata), as the filter sees it;
--event-type takes the catalogue's example of the type (`webhook-service event-types --json`).
Prints `match` or `no match` (--json: {\"matches\": true|false}) and exits 0 either way: the
answer is a result, not a failure. Exit code 1 means the service refused the filter or event.";

/// Options of `webhooks filter-test`.
#[derive(Args)]
pub struct FilterTestArgs {
    /// The filter to try: JSON text or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    filter: String,
    /// The sample event envelope: JSON text or @FILE.
    #[arg(
        long,
        value_name = "JSON|@FILE",
        required_unless_present = "event_type"
    )]
    event: Option<String>,
    /// Use the catalogue's example event of this type as the sample.
    #[arg(long, value_name = "TYPE", conflicts_with = "event")]
    event_type: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// The catalogue's example envelope of `event_type`.
fn example_event(event_type: &str) -> Result<Value, CliError> {
    let info = catalogue()
        .iter()
        .find(|t| t.name == event_type)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--event-type: {event_type:?} is not in the catalogue; `webhook-service event-types` lists the types"
            ))
        })?;
    serde_json::from_str(info.example).map_err(|e| CliError::Other(e.into()))
}

pub async fn run(args: FilterTestArgs) -> Result<(), CliError> {
    let usage = |e: super::webhook_options::OptionError| CliError::Usage(e.to_string());
    let filter = json_document("--filter", &args.filter).map_err(usage)?;
    let event = match (&args.event, &args.event_type) {
        (Some(written), _) => json_document("--event", written).map_err(usage)?,
        (None, Some(event_type)) => example_event(event_type)?,
        // clap requires one of the two.
        (None, None) => {
            return Err(CliError::Usage(
                "give the sample with --event or --event-type".into(),
            ));
        }
    };
    let service = Service::connect(&args.connection)?;
    let envelope = service
        .user(
            Method::POST,
            "/api/v1/webhooks/filter-test",
            Some(&json!({"filter": filter, "event": event})),
        )
        .await?;
    let data = &envelope["data"];
    if service.json {
        print_json(data);
    } else if data["matches"].as_bool() == Some(true) {
        outln!("{}", paint("match", Tone::Good));
    } else {
        outln!("{}", paint("no match", Tone::Dim));
    }
    Ok(())
}
