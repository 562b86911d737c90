//! `listen`: a local receiver for developing an endpoint. Every delivery is
//! verified (both signature schemes), printed, and answered as told
//! (`--respond`) or with what the developer's app answers (`--forward-to`).

mod report;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use webhook_domain::timefmt::{format_rfc3339_millis, now_ms};
use webhook_verify::{DEFAULT_TOLERANCE_SECS, StandardHeaders, verify_legacy, verify_standard};

use self::report::{Answered, Check, Delivery};
use super::connect::Service;
use super::http::HttpClient;
use super::output::outln;
use super::output::{Tone, paint};
use super::{CliError, Connection};

pub const AFTER_HELP: &str = "\
Examples:
  webhook-service listen --dev --register user.created
  webhook-service listen --port 3000 --secret whsec_... --path /webhooks
  webhook-service listen --dev --register 'credit.*' --forward-to http://localhost:8080/webhooks
  webhook-service listen --dev --register user.created --respond 500   # watch retries and auto-disable

Each delivery prints its time, type, event id, delivery id, attempt, whether each
signature (X-Webhook-Signature and Standard Webhooks) verified, and the envelope.
Signatures are reported, not enforced: the answer is --respond's, or the app's with
--forward-to. With --register (and --dev or --token) a webhook pointing here is created
for the given event types and deleted when listen stops (Ctrl-C).";

/// Largest delivery body read (the service sends at most about 1 MiB).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// How long `--respond timeout` holds a request (longer than any WEBHOOK_TIMEOUT in use).
const HOLD: Duration = Duration::from_secs(3600);

/// What `listen` answers when it does not forward.
#[derive(Clone, Copy, Debug)]
pub enum Respond {
    /// This status code.
    Status(StatusCode),
    /// No answer: the service's attempt times out.
    Timeout,
}

fn parse_respond(text: &str) -> Result<Respond, String> {
    if text.eq_ignore_ascii_case("timeout") {
        return Ok(Respond::Timeout);
    }
    text.parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|c| c.as_u16() >= 200)
        .map(Respond::Status)
        .ok_or_else(|| format!("{text:?} is neither a status code (200-599) nor `timeout`"))
}

/// Options of `listen`.
#[derive(Args)]
pub struct ListenArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Path deliveries arrive on.
    #[arg(long, default_value = "/webhooks")]
    path: String,
    /// The webhook's secret, to verify signatures (with --register: the secret to register).
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Answer with this status (e.g. 200, 500, 410) or `timeout` (never answer).
    #[arg(long, default_value = "200", value_parser = parse_respond, conflicts_with = "forward_to")]
    respond: Respond,
    /// Relay each delivery to this URL and answer the service with the app's answer.
    #[arg(long, value_name = "URL")]
    forward_to: Option<String>,
    /// One line per delivery instead of a block with the envelope.
    #[arg(long)]
    quiet: bool,
    /// Create a webhook pointing here for these event types (comma separated), deleted on exit.
    #[arg(long, value_name = "EVENT_TYPES", value_delimiter = ',', num_args = 1..)]
    register: Vec<String>,
    #[command(flatten)]
    connection: Connection,
}

/// What every request handler shares.
struct Receiver {
    path: String,
    secret: Mutex<Option<String>>,
    respond: Respond,
    forward_to: Option<String>,
    quiet: bool,
    json: bool,
    http: HttpClient,
}

pub async fn run(args: ListenArgs) -> Result<(), CliError> {
    if !args.path.starts_with('/') {
        return Err(CliError::Usage(format!(
            "--path {:?} must start with /",
            args.path
        )));
    }
    if let Some(url) = &args.forward_to
        && !url.starts_with("http://")
        && !url.starts_with("https://")
    {
        return Err(CliError::Usage(format!(
            "--forward-to {url}: give the app's http:// or https:// address"
        )));
    }
    let service = Service::connect(&args.connection)?;
    let listener = TcpListener::bind((args.host, args.port))
        .await
        .map_err(|e| {
            CliError::Usage(format!(
                "cannot listen on {}:{}: {e} (pick another --port)",
                args.host, args.port
            ))
        })?;
    let local: SocketAddr = listener.local_addr()?;
    let reachable_host = if local.ip().is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        local.ip()
    };
    let endpoint = format!(
        "http://{}{}",
        SocketAddr::new(reachable_host, local.port()),
        args.path
    );
    let receiver = Arc::new(Receiver {
        path: args.path.clone(),
        secret: Mutex::new(args.secret.clone()),
        respond: args.respond,
        forward_to: args.forward_to.clone(),
        quiet: args.quiet,
        json: args.connection.json,
        http: service.http().clone(),
    });
    eprintln!("listening on {endpoint}");
    let registered = if args.register.is_empty() {
        None
    } else {
        Some(register(&service, &receiver, &endpoint, &args).await?)
    };
    if let Some(forward) = &args.forward_to {
        eprintln!("forwarding each delivery to {forward}");
    }
    let served = serve(listener, receiver).await;
    if let Some(id) = registered {
        match service
            .user(Method::DELETE, &format!("/api/v1/webhooks/{id}"), None)
            .await
        {
            Ok(_) => eprintln!("deleted webhook {id}"),
            Err(e) => eprintln!("could not delete webhook {id}: {e}"),
        }
    }
    served
}

/// Creates the webhook pointing at this receiver; answers its id.
async fn register(
    service: &Service,
    receiver: &Receiver,
    endpoint: &str,
    args: &ListenArgs,
) -> Result<String, CliError> {
    let mut body = json!({
        "url": endpoint,
        "eventTypes": args.register,
        "description": "webhook-service listen",
    });
    if let Some(secret) = &args.secret {
        body["secret"] = json!(secret);
    }
    let envelope = service
        .user(Method::POST, "/api/v1/webhooks", Some(&body))
        .await?;
    let data = &envelope["data"];
    let id = data["id"].as_str().unwrap_or_default().to_string();
    if let Some(secret) = data["secret"].as_str()
        && data["secretMasked"].as_bool() != Some(true)
        && let Ok(mut slot) = receiver.secret.lock()
    {
        *slot = Some(secret.to_string());
    }
    eprintln!(
        "registered webhook {id} for {} at {} (deleted on exit)",
        args.register.join(", "),
        service.base
    );
    if args.secret.is_none()
        && let Some(secret) = data["secret"].as_str()
    {
        eprintln!("its secret (used to verify below): {secret}");
    }
    Ok(id)
}

/// Accepts connections until Ctrl-C or SIGTERM.
async fn serve(listener: TcpListener, receiver: Arc<Receiver>) -> Result<(), CliError> {
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let receiver = receiver.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(receiver.clone(), req));
                    // A broken connection is the sender's business; the next one is served.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn text_response(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response
}

fn check_signatures(
    secret: Option<&str>,
    headers: &http::HeaderMap,
    body: &[u8],
) -> (Check, Check) {
    let Some(secret) = secret else {
        return (Check::NotChecked, Check::NotChecked);
    };
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let legacy = match verify_legacy(secret, body, get("x-webhook-signature")) {
        Ok(()) => Check::Verified,
        Err(e) => Check::Failed(e.to_string()),
    };
    let standard_headers = StandardHeaders {
        id: get("webhook-id"),
        timestamp: get("webhook-timestamp"),
        signature: get("webhook-signature"),
    };
    let standard = match verify_standard(
        secret,
        standard_headers,
        body,
        now_ms() / 1000,
        DEFAULT_TOLERANCE_SECS,
    ) {
        Ok(()) => Check::Verified,
        Err(e) => Check::Failed(e.to_string()),
    };
    (legacy, standard)
}

/// Relays the delivery to the developer's app and answers with the app's answer.
async fn forward(
    receiver: &Receiver,
    url: &str,
    method: Method,
    headers: &http::HeaderMap,
    body: Bytes,
) -> (Answered, Response<Full<Bytes>>) {
    let started = Instant::now();
    let relayed: Vec<(HeaderName, HeaderValue)> = headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "host" | "content-length" | "connection" | "transfer-encoding"
            )
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    match receiver.http.send(method, url, &relayed, Some(body)).await {
        Ok(answer) => {
            let mut response = Response::new(Full::new(answer.body.clone()));
            *response.status_mut() = answer.status;
            if let Some(ct) = answer.headers.get(header::CONTENT_TYPE) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, ct.clone());
            }
            let answered = Answered {
                status: Some(answer.status),
                forwarded: Some(Ok((answer.status, answer.body, started.elapsed()))),
            };
            (answered, response)
        }
        Err(e) => {
            let answered = Answered {
                status: Some(StatusCode::BAD_GATEWAY),
                forwarded: Some(Err(e.to_string())),
            };
            let response = text_response(
                StatusCode::BAD_GATEWAY,
                "webhook-service listen: the app did not answer\n",
            );
            (answered, response)
        }
    }
}

async fn handle(
    receiver: Arc<Receiver>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != receiver.path {
        eprintln!(
            "{}",
            paint(
                &format!(
                    "{} {} → 404 (listening on {})",
                    req.method(),
                    req.uri(),
                    receiver.path
                ),
                Tone::Dim
            )
        );
        return Ok(text_response(
            StatusCode::NOT_FOUND,
            "webhook-service listen: not the webhook path\n",
        ));
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(text_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large or broken\n",
            ));
        }
    };
    let secret = receiver.secret.lock().ok().and_then(|s| s.clone());
    let (legacy, standard) = check_signatures(secret.as_deref(), &parts.headers, &body);
    let received_at = format_rfc3339_millis(now_ms());
    let (answered, response) = match (&receiver.forward_to, receiver.respond) {
        (Some(url), _) => {
            forward(
                &receiver,
                url,
                parts.method.clone(),
                &parts.headers,
                body.clone(),
            )
            .await
        }
        (None, Respond::Status(status)) => (
            Answered {
                status: Some(status),
                forwarded: None,
            },
            text_response(status, "{\"received\":true}"),
        ),
        (None, Respond::Timeout) => (
            Answered {
                status: None,
                forwarded: None,
            },
            text_response(StatusCode::GATEWAY_TIMEOUT, "held too long\n"),
        ),
    };
    let report = Delivery {
        received_at: &received_at,
        headers: &parts.headers,
        body: &body,
        legacy: &legacy,
        standard: &standard,
        answered: &answered,
        forward_to: receiver.forward_to.as_deref(),
    };
    let text = if receiver.json {
        report.json().to_string()
    } else if receiver.quiet {
        report.line()
    } else {
        report.block()
    };
    outln!("{text}");
    if answered.status.is_none() {
        // Holding the request is the point: the service's attempt times out.
        tokio::time::sleep(HOLD).await;
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respond_takes_a_status_or_timeout() {
        assert!(matches!(parse_respond("410"), Ok(Respond::Status(s)) if s == StatusCode::GONE));
        assert!(matches!(parse_respond("TIMEOUT"), Ok(Respond::Timeout)));
        assert!(parse_respond("100").is_err());
        assert!(parse_respond("soon").is_err());
    }
}
