//! The security headers of the portal's pages.

use axum::http::{HeaderMap, HeaderValue, header};

/// Parses `WEBHOOK_PORTAL_FRAME_ANCESTORS`: sources separated by commas or
/// spaces, each `'self'`, `'none'` or an `http(s)://` origin (a `*.` host
/// prefix allowed). Anything else is refused, so nothing can be injected
/// into the policy.
pub fn parse_frame_ancestors(text: &str) -> Result<Vec<String>, String> {
    let sources: Vec<String> = text
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if sources.is_empty() {
        return Err("name at least one source, e.g. 'self' or https://app.example.com".into());
    }
    for source in &sources {
        let ok = match source.as_str() {
            "'self'" | "'none'" => true,
            other => is_origin(other),
        };
        if !ok {
            return Err(format!(
                "'{source}' is not 'self', 'none' or an http(s) origin such as https://app.example.com"
            ));
        }
    }
    if sources.iter().any(|s| s == "'none'") && sources.len() > 1 {
        return Err("'none' cannot be combined with other sources".into());
    }
    Ok(sources)
}

fn is_origin(text: &str) -> bool {
    let Some(rest) = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.strip_prefix("*.").unwrap_or(rest);
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// The Content-Security-Policy of every portal response: scripts, styles,
/// images and API calls from this origin only, no inline script, framed only
/// by the configured ancestors.
pub fn content_security_policy(frame_ancestors: &[String]) -> String {
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors {}",
        frame_ancestors.join(" ")
    )
}

/// Adds the portal's security headers.
pub fn apply(headers: &mut HeaderMap, frame_ancestors: &[String]) {
    // The sources were checked at start (`parse_frame_ancestors`), so the
    // value is printable ASCII; should it ever not be, no frame is allowed.
    let csp = HeaderValue::from_str(&content_security_policy(frame_ancestors))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"));
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The token travels in the fragment, which browsers never send; no
    // referrer keeps even the page's path to itself.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_ancestors_accept_origins_and_refuse_injection() {
        assert_eq!(
            parse_frame_ancestors("'self', https://app.example.com").unwrap(),
            vec!["'self'", "https://app.example.com"]
        );
        assert!(parse_frame_ancestors("https://*.example.com http://localhost:3000").is_ok());
        assert!(parse_frame_ancestors("https://a.com; script-src *").is_err());
        assert!(parse_frame_ancestors("*").is_err());
        assert!(parse_frame_ancestors("'none' 'self'").is_err());
        assert!(parse_frame_ancestors(" , ").is_err());
    }
}
