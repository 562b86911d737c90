//! One delivery attempt: sign the stored bytes, send them, and turn what
//! happened into the delivery's next state by the rules of the retry policy.

use std::time::Duration;

use webhook_domain::delivery::{
    AttemptErrorKind, DeliveryStatus, ResponseClass, classify_status, parse_retry_after,
};
use webhook_domain::retry::RetrySchedule;
use webhook_domain::signing::sign_delivery;
use webhook_domain::timefmt::now_ms;
use webhook_outbound::{ErrorKind, OutboundClient, OutboundError, Outcome, RequestHeaders};

use super::oauth::TokenError;
use super::routing::Route;
use crate::store::{AttemptRecord, AttemptReport, DueDelivery};

/// The retry rules an attempt is judged by.
#[derive(Debug, Clone)]
pub struct RetryRules {
    /// Waits before each retry.
    pub schedule: RetrySchedule,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

fn kind(kind: ErrorKind) -> AttemptErrorKind {
    match kind {
        ErrorKind::Timeout => AttemptErrorKind::Timeout,
        ErrorKind::Connect => AttemptErrorKind::Connect,
        ErrorKind::Tls => AttemptErrorKind::Tls,
        ErrorKind::Dns => AttemptErrorKind::Dns,
        ErrorKind::BlockedAddress => AttemptErrorKind::BlockedAddress,
        ErrorKind::HttpStatus => AttemptErrorKind::HttpStatus,
        ErrorKind::Redirect => AttemptErrorKind::Redirect,
    }
}

/// The headers of one attempt as sent, and the part of them the log keeps.
pub struct SentHeaders {
    /// Every header the attempt adds (the client adds host, type, length and agent).
    pub headers: RequestHeaders,
    /// The signatures, timestamp and user agent: what cannot be rebuilt
    /// from the delivery later (`sent_headers` does the rest). Writing all eleven headers per
    /// attempt was a third of the bytes the store wrote per delivery.
    pub logged: Vec<(String, String)>,
}

/// The headers of one attempt, as sent (and as logged).
pub fn request_headers(
    route: &Route,
    job: &DueDelivery,
    attempt: u32,
    now_ms: i64,
    user_agent: &str,
) -> SentHeaders {
    let timestamp = now_ms.div_euclid(1000);
    let previous = route.previous_secret_at(now_ms);
    let mut signatures = sign_delivery(
        &route.secret,
        previous.as_slice(),
        job.event_id.as_str(),
        timestamp,
        &job.payload,
    );
    if let Some(keys) = &route.endpoint.signing {
        // Standard Webhooks v1a; X-Webhook-Signature stays the guide's HMAC.
        signatures.standard = keys.sign(job.event_id.as_str(), timestamp, &job.payload, now_ms);
    }
    let ts = timestamp.to_string();
    let event_id = job.event_id.as_str();
    let attempt = attempt.to_string();
    let mut headers = RequestHeaders::with_capacity(384);
    let pairs: [(&str, &str); 9] = [
        ("x-webhook-signature", &signatures.legacy),
        ("x-webhook-id", event_id),
        ("x-webhook-event", &job.event_type),
        ("x-webhook-timestamp", &ts),
        ("x-webhook-delivery", job.id.as_str()),
        ("x-webhook-attempt", &attempt),
        ("webhook-id", event_id),
        ("webhook-timestamp", &ts),
        ("webhook-signature", &signatures.standard),
    ];
    for (name, value) in pairs {
        // Ids, numbers, event types (a closed catalogue) and base64/hex
        // text: none holds a control character, so none is refused.
        let _ = headers.push(name, value);
    }
    for (name, value) in &route.endpoint.sent {
        // Checked when the webhook was written (`CustomHeaders::parse`).
        let _ = headers.push(name, value);
    }
    let mut logged = vec![
        ("x-webhook-signature".to_string(), signatures.legacy),
        ("x-webhook-timestamp".to_string(), ts),
        ("webhook-signature".to_string(), signatures.standard),
        ("user-agent".to_string(), user_agent.to_string()),
    ];
    // Names with masked values: a log must never hold a credential.
    logged.extend(route.endpoint.logged.iter().cloned());
    SentHeaders { headers, logged }
}

/// Makes one attempt of `job` to `route` and judges it. A `test_send` is
/// never retried and does not count toward the webhook's health.
pub async fn attempt(
    client: &OutboundClient,
    rules: &RetryRules,
    user_agent: &str,
    route: &Route,
    job: &DueDelivery,
    test_send: bool,
) -> AttemptReport {
    let number = job.attempts + 1;
    let started_at = now_ms();
    let oauth = route.endpoint.oauth.as_deref();
    let token = match oauth {
        None => None,
        // Boxed, as the exchange below: a token request is an exchange of
        // its own, and inline it would make every attempt's state as large.
        Some(source) => match Box::pin(source.token(client, None)).await {
            Ok(token) => Some(token),
            Err(e) => {
                let logged = request_headers(route, job, number, started_at, user_agent).logged;
                return auth_failed(rules, route, job, number, started_at, logged, e, test_send);
            }
        },
    };
    let send = |authorization: Option<String>| {
        let SentHeaders {
            mut headers,
            logged,
        } = request_headers(route, job, number, started_at, user_agent);
        if let Some(value) = &authorization {
            // A printable token (checked when it was received).
            let _ = headers.push("authorization", value);
        }
        // Boxed where it is made: the exchange's state (connect, TLS
        // handshake, request and response) is kilobytes, and inline it was
        // copied whole into this block, into the attempt and into the
        // runner's box: 288 first-level cache misses per delivery in those
        // copies, 71 boxed (cachegrind, docs/performance-log.md, 2026-12-06).
        let outcome = Box::pin(client.post_as(
            &route.url,
            headers,
            job.payload.clone(),
            route.endpoint.identity.as_ref(),
            route.controls.timeout,
        ));
        async move { (outcome.await, logged) }
    };
    let (mut outcome, mut logged) = send(token.as_ref().map(|t| t.authorization.clone())).await;
    // An endpoint that refuses a token the cache still holds (revoked, or
    // its clock differs) gets one new token, once.
    if let (Some(source), Some(old), Some(401), None) =
        (oauth, &token, outcome.status, &outcome.error)
    {
        match Box::pin(source.token(client, Some(old.generation))).await {
            Ok(fresh) => (outcome, logged) = send(Some(fresh.authorization)).await,
            Err(e) => {
                return auth_failed(rules, route, job, number, started_at, logged, e, test_send);
            }
        }
    }
    let answered_at = now_ms();
    judge(
        rules,
        route,
        job,
        number,
        (started_at, answered_at),
        logged,
        outcome,
        test_send,
    )
}

/// The report of an attempt that sent nothing because no OAuth2 token
/// could be had: a failure like any other (retried, counted towards
/// disabling), of its own kind.
#[allow(clippy::too_many_arguments)]
fn auth_failed(
    rules: &RetryRules,
    route: &Route,
    job: &DueDelivery,
    number: u32,
    started_at: i64,
    logged: Vec<(String, String)>,
    error: TokenError,
    test_send: bool,
) -> AttemptReport {
    let message = error.to_string();
    let outcome = Outcome {
        error: Some(OutboundError::new(ErrorKind::Connect, message.clone())),
        ..Outcome::default()
    };
    let mut report = judge(
        rules,
        route,
        job,
        number,
        (started_at, now_ms()),
        logged,
        outcome,
        test_send,
    );
    report.attempt.error_kind = Some(AttemptErrorKind::Auth);
    report.attempt.error_message = Some(message);
    report
}

/// The headers an attempt was sent with, rebuilt from what was stored
/// (signatures, timestamp, user agent) and the delivery's own ids.
pub fn sent_headers(
    stored: &[(String, String)],
    event_id: &str,
    event_type: &str,
    delivery_id: &str,
    attempt: u32,
) -> Vec<(String, String)> {
    if stored.iter().any(|(k, _)| k == "x-webhook-id") {
        return stored.to_vec(); // logged in full
    }
    let get = |name: &str| {
        stored
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let timestamp = get("x-webhook-timestamp");
    // What the log keeps beyond the service's own headers: the endpoint's
    // custom headers and authorization, masked when they were logged.
    let endpoint = stored.iter().filter(|(k, _)| {
        !matches!(
            k.as_str(),
            "x-webhook-signature" | "x-webhook-timestamp" | "webhook-signature" | "user-agent"
        )
    });
    let mut headers: Vec<(String, String)> = [
        ("content-type", "application/json".to_string()),
        ("user-agent", get("user-agent")),
        ("x-webhook-signature", get("x-webhook-signature")),
        ("x-webhook-id", event_id.to_string()),
        ("x-webhook-event", event_type.to_string()),
        ("x-webhook-timestamp", timestamp.clone()),
        ("x-webhook-delivery", delivery_id.to_string()),
        ("x-webhook-attempt", attempt.to_string()),
        ("webhook-id", event_id.to_string()),
        ("webhook-timestamp", timestamp),
        ("webhook-signature", get("webhook-signature")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    headers.extend(endpoint.cloned());
    headers
}

/// The schedule a webhook's deliveries are retried by: its own, with the
/// configured jitter, or the service's.
fn schedule_of<'a>(rules: &'a RetryRules, route: &'a Route) -> std::borrow::Cow<'a, RetrySchedule> {
    use std::borrow::Cow;
    match &route.controls.retry_schedule {
        None => Cow::Borrowed(&rules.schedule),
        Some(own) if own.jitter() == rules.schedule.jitter() => Cow::Borrowed(own),
        Some(own) => Cow::Owned(own.clone().with_jitter(rules.schedule.jitter())),
    }
}

#[allow(clippy::too_many_arguments)]
fn judge(
    rules: &RetryRules,
    route: &Route,
    job: &DueDelivery,
    number: u32,
    (started_at, answered_at): (i64, i64),
    request_headers: Vec<(String, String)>,
    outcome: Outcome,
    test_send: bool,
) -> AttemptReport {
    let mut error_kind = outcome.error.as_ref().map(|e| kind(e.kind));
    let mut error_message = outcome.error.as_ref().map(|e| e.message.clone());
    let mut disable_webhook = None;
    let mut min_wait = None;
    let class = match (outcome.status, &outcome.error) {
        (Some(status), None) => classify_status(status),
        _ => ResponseClass::Failed,
    };
    let delivered = class == ResponseClass::Delivered;
    if let (Some(status), None) = (outcome.status, &outcome.error) {
        match class {
            ResponseClass::Delivered => {}
            ResponseClass::Gone => {
                error_kind = Some(AttemptErrorKind::HttpStatus);
                error_message = Some("endpoint answered 410 Gone".into());
                disable_webhook = Some("the endpoint answered 410 Gone".to_string());
            }
            ResponseClass::Throttled => {
                error_kind = Some(AttemptErrorKind::HttpStatus);
                error_message = Some(format!("endpoint answered {status}"));
                min_wait = outcome
                    .retry_after
                    .as_deref()
                    .and_then(|v| parse_retry_after(v, answered_at.div_euclid(1000)))
                    .map(|d| d.min(rules.max_retry_after));
            }
            ResponseClass::Redirect => {
                error_kind = Some(AttemptErrorKind::Redirect);
                error_message = Some(format!(
                    "endpoint answered {status} redirect to {} (redirects are not followed)",
                    outcome.location.as_deref().unwrap_or("no Location")
                ));
            }
            ResponseClass::Failed => {
                error_kind = Some(AttemptErrorKind::HttpStatus);
                error_message = Some(format!("endpoint answered {status}"));
            }
        }
    }
    // Waits count from the moment the answer was read, never from when the
    // attempt started: a receiver that says `Retry-After: 1` must not see the
    // next attempt sooner than a second after it answered. The clock reads
    // whole milliseconds and the scheduler sends once `next_attempt_at <=
    // now`, so one millisecond more makes the wait at least the one asked for.
    let not_before = answered_at.saturating_add(1);
    let (status, next_attempt_at) = if delivered {
        (DeliveryStatus::Delivered, None)
    } else if test_send || disable_webhook.is_some() {
        (DeliveryStatus::Failed, None)
    } else {
        match schedule_of(rules, route).next_delay(number, fastrand::f64()) {
            None => (DeliveryStatus::Failed, None),
            Some(delay) => {
                let wait = min_wait.map_or(delay, |m| m.max(delay));
                (
                    DeliveryStatus::Retrying,
                    Some(not_before.saturating_add(wait.as_millis() as i64)),
                )
            }
        }
    };
    AttemptReport {
        delivery_id: job.id.clone(),
        webhook_id: route.id.clone(),
        claimed: job.claimed,
        attempt: AttemptRecord {
            attempt: number,
            started_at,
            duration_ms: u32::try_from(outcome.duration.as_millis()).unwrap_or(u32::MAX),
            request_headers,
            status_code: outcome.status,
            response_headers: outcome.response_headers,
            response_body: outcome.body_excerpt,
            error_kind,
            error_message,
        },
        status,
        next_attempt_at,
        disable_webhook,
        test_send,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use webhook_domain::event_type::Subscription;
    use webhook_domain::ids::{DeliveryId, EventId, UserId, WebhookId};
    use webhook_domain::webhook::WebhookSecret;

    fn route() -> Route {
        Route {
            id: WebhookId::generate(),
            owner_id: UserId::parse("u1").unwrap(),
            url: url::Url::parse("https://example.com/hook").unwrap(),
            subscription: Subscription::parse(&["*"]).unwrap(),
            is_active: true,
            scope_all: false,
            secret: WebhookSecret::parse("a-secret-of-sixteen+").unwrap(),
            previous_secret: None,
            controls: Default::default(),
            endpoint: Default::default(),
        }
    }

    fn job() -> DueDelivery {
        DueDelivery {
            id: DeliveryId::generate(),
            event_id: EventId::generate(),
            event_type: "user.created".into(),
            webhook_id: WebhookId::generate(),
            attempts: 0,
            payload: Bytes::from_static(b"{}"),
            claimed: crate::store::Claimed::new_delivery(0),
        }
    }

    fn throttled(retry_after: &str, duration: Duration) -> Outcome {
        Outcome {
            status: Some(429),
            retry_after: Some(retry_after.into()),
            duration,
            ..Outcome::default()
        }
    }

    fn rules() -> RetryRules {
        RetryRules {
            schedule: RetrySchedule::parse("10ms").unwrap(),
            max_retry_after: Duration::from_secs(3600),
        }
    }

    #[test]
    fn a_webhook_schedule_replaces_the_service_one_with_its_jitter() {
        let mut own = route();
        own.controls.retry_schedule = Some(RetrySchedule::parse("1s").unwrap());
        let rules = RetryRules {
            schedule: RetrySchedule::parse("10ms,20ms").unwrap().with_jitter(0.0),
            max_retry_after: Duration::from_secs(3600),
        };
        let schedule = schedule_of(&rules, &own);
        assert_eq!(schedule.delays(), [Duration::from_secs(1)]);
        assert_eq!(schedule.jitter(), 0.0, "the configured jitter");
        assert_eq!(schedule_of(&rules, &route()).max_attempts(), 3);
        let failed = Outcome {
            status: Some(500),
            ..Outcome::default()
        };
        let second = judge(&rules, &own, &job(), 2, (0, 1), Vec::new(), failed, false);
        assert_eq!(
            second.status,
            DeliveryStatus::Failed,
            "its one retry was used"
        );
    }

    #[test]
    fn a_route_never_shows_its_endpoint_credentials() {
        use webhook_domain::endpoint::{CustomHeaders, EndpointAuth, EndpointOptions};
        let options = EndpointOptions::new(
            CustomHeaders::parse(vec![("X-Api-Key".into(), "raw-key-value".into())]).unwrap(),
            Some(EndpointAuth::bearer("raw-token-value".into()).unwrap()),
        )
        .unwrap();
        let mut route = route();
        route.endpoint = super::super::routing::EndpointHeaders::new(&options);
        let shown = format!("{route:?}");
        assert!(!shown.contains("raw-key-value") && !shown.contains("raw-token-value"));
        assert!(shown.contains("x-api-key"), "{shown}");
        let sent = request_headers(&route, &job(), 1, 1_000, "ua");
        let logged = format!("{:?}", sent.logged);
        assert!(!logged.contains("raw-key-value") && !logged.contains("raw-token-value"));
    }

    #[test]
    fn retry_after_counts_from_the_answer_not_from_the_start() {
        // Sent at 10_000.9 (read as 10_000), answered 5.9 ms later (a
        // duration of 5 whole ms) at 10_006.8 (read as 10_006): the next
        // attempt may not go out before 11_006.8, so it is due at 11_007.
        let report = judge(
            &rules(),
            &route(),
            &job(),
            1,
            (10_000, 10_006),
            Vec::new(),
            throttled("1", Duration::from_micros(5_900)),
            false,
        );
        assert_eq!(report.status, DeliveryStatus::Retrying);
        assert_eq!(report.next_attempt_at, Some(11_007));
    }

    #[test]
    fn a_retry_after_date_is_never_reached_early() {
        // Answered at 1_700_000_000_400 ms, asked to wait until the start of
        // second 1_700_000_002: due no sooner than that second began.
        let date = "Tue, 14 Nov 2023 22:13:22 GMT"; // 1_700_000_002
        let report = judge(
            &rules(),
            &route(),
            &job(),
            1,
            (1_700_000_000_000, 1_700_000_000_400),
            Vec::new(),
            throttled(date, Duration::from_millis(400)),
            false,
        );
        let due = report.next_attempt_at.unwrap();
        assert!(due >= 1_700_000_002_000, "due at {due}");
    }
}
