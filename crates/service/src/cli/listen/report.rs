//! How `listen` shows a delivery: a readable block, one line (`--quiet`),
//! or one JSON object per line (`--json`).

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use crate::cli::output::{Tone, paint, status_tone};

/// The outcome of one signature check.
pub enum Check {
    Verified,
    Failed(String),
    NotChecked,
}

impl Check {
    fn json(&self) -> Value {
        match self {
            Check::Verified => json!("verified"),
            Check::Failed(why) => json!(format!("failed: {why}")),
            Check::NotChecked => json!("not checked (no --secret)"),
        }
    }

    fn text(&self) -> String {
        match self {
            Check::Verified => paint("✓ verified", Tone::Good),
            Check::Failed(why) => paint(&format!("✗ FAILED ({why})"), Tone::Bad),
            Check::NotChecked => paint("not checked (no --secret)", Tone::Dim),
        }
    }
}

/// What the app answered a forwarded delivery.
pub type Forwarded = Result<(StatusCode, Bytes, Duration), String>;

/// The answer the service got, and the app's when forwarded.
pub struct Answered {
    /// What the service was answered; `None` while holding (`--respond timeout`).
    pub status: Option<StatusCode>,
    /// The app's answer, with `--forward-to`.
    pub forwarded: Option<Forwarded>,
}

/// One received delivery, for printing.
pub struct Delivery<'a> {
    pub received_at: &'a str,
    pub headers: &'a http::HeaderMap,
    pub body: &'a Bytes,
    pub legacy: &'a Check,
    pub standard: &'a Check,
    pub answered: &'a Answered,
    pub forward_to: Option<&'a str>,
}

impl Delivery<'_> {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    }

    fn envelope(&self) -> Value {
        serde_json::from_slice(self.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(self.body).into_owned()))
    }

    fn answer_text(&self) -> String {
        match self.answered.status {
            Some(status) => paint(&status.as_u16().to_string(), status_tone(status.as_str())),
            None => paint("none (holding until the service times out)", Tone::Warn),
        }
    }

    pub fn json(&self) -> Value {
        let forwarded = match &self.answered.forwarded {
            None => Value::Null,
            Some(Ok((status, body, took))) => json!({
                "url": self.forward_to,
                "status": status.as_u16(),
                "body": String::from_utf8_lossy(body),
                "durationMs": took.as_millis() as u64,
            }),
            Some(Err(e)) => json!({"url": self.forward_to, "error": e}),
        };
        json!({
            "receivedAt": self.received_at,
            "eventType": self.header("x-webhook-event"),
            "eventId": self.header("x-webhook-id"),
            "deliveryId": self.header("x-webhook-delivery"),
            "attempt": self.header("x-webhook-attempt").parse::<u32>().ok(),
            "signatures": {
                "X-Webhook-Signature": self.legacy.json(),
                "standardWebhooks": self.standard.json(),
            },
            "verified": match (self.legacy, self.standard) {
                (Check::Verified, Check::Verified) => json!(true),
                (Check::NotChecked, Check::NotChecked) => Value::Null,
                _ => json!(false),
            },
            "answered": self.answered.status.map(|s| s.as_u16()),
            "forwarded": forwarded,
            "envelope": self.envelope(),
        })
    }

    pub fn line(&self) -> String {
        let short = |c: &Check| match c {
            Check::Verified => paint("ok", Tone::Good),
            Check::Failed(_) => paint("FAILED", Tone::Bad),
            Check::NotChecked => paint("-", Tone::Dim),
        };
        format!(
            "{}  {}  {}  {}  attempt {}  sig {} std {}  → {}",
            self.received_at,
            self.header("x-webhook-event"),
            self.header("x-webhook-id"),
            self.header("x-webhook-delivery"),
            self.header("x-webhook-attempt"),
            short(self.legacy),
            short(self.standard),
            self.answer_text(),
        )
    }

    pub fn block(&self) -> String {
        let mut out = format!(
            "── {}  {}\n   event      {}\n   delivery   {} (attempt {})\n   X-Webhook-Signature  {}\n   Standard Webhooks    {}\n",
            self.received_at,
            paint(self.header("x-webhook-event"), Tone::Warn),
            self.header("x-webhook-id"),
            self.header("x-webhook-delivery"),
            self.header("x-webhook-attempt"),
            self.legacy.text(),
            self.standard.text(),
        );
        match (&self.answered.forwarded, self.forward_to) {
            (Some(Ok((status, body, took))), Some(url)) => {
                out.push_str(&format!(
                    "   forwarded  {url} → {} in {} ms: {}\n",
                    paint(&status.as_u16().to_string(), status_tone(status.as_str())),
                    took.as_millis(),
                    String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
                ));
            }
            (Some(Err(e)), Some(url)) => {
                out.push_str(&format!(
                    "   forwarded  {url} → {}\n",
                    paint(&format!("failed: {e}"), Tone::Bad)
                ));
            }
            _ => {}
        }
        out.push_str(&format!("   answered   {}\n", self.answer_text()));
        let pretty = serde_json::to_string_pretty(&self.envelope()).unwrap_or_default();
        for line in pretty.lines() {
            out.push_str("   ");
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}
