//! Structured logs: JSON lines (the platform's default) or pretty text.
//!
//! Nothing logged anywhere carries a secret or a token: handlers log ids and
//! outcomes only, configuration is printed redacted, and request logging
//! records the method, path and status, never headers or bodies.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; `level` is `LOG_LEVEL` (a level or a filter).
pub fn init(level: &str, format: LogFormat) {
    // A bare level applies to our crates; dependencies stay at warn unless named.
    let directive = if level.contains('=') || level.contains(',') {
        level.to_string()
    } else {
        format!("warn,webhook_service={level},webhook_outbound={level}")
    };
    let filter = EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    // Already installed (tests embedding the server): keep the first.
    let _ = result;
}
