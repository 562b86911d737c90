//! Output conventions: aligned tables for people, `--json` for scripts,
//! colour only when stdout is a terminal (and `NO_COLOR` is unset).

use std::io::{IsTerminal as _, Write as _};

use serde_json::Value;

/// `println!` that ends the command quietly when stdout is closed (`| head`)
/// instead of panicking on the broken pipe.
macro_rules! outln {
    () => { $crate::cli::output::write_line("") };
    ($($arg:tt)*) => { $crate::cli::output::write_line(&format!($($arg)*)) };
}
pub(crate) use outln;

/// Writes one line to stdout; a reader that went away ends the process.
pub fn write_line(text: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
        // Nobody reads any more: what is left to print has no reader either.
        std::process::exit(0);
    }
}

/// Whether stdout takes ANSI colours.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// A colour of the palette.
#[derive(Clone, Copy)]
pub enum Tone {
    Good,
    Bad,
    Warn,
    Dim,
}

/// `text` in `tone` when colours are on.
pub fn paint(text: &str, tone: Tone) -> String {
    if !colour() {
        return text.to_string();
    }
    let code = match tone {
        Tone::Good => "32",
        Tone::Bad => "31",
        Tone::Warn => "33",
        Tone::Dim => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// The tone of a delivery status or an HTTP status.
pub fn status_tone(status: &str) -> Tone {
    match status {
        "delivered" | "active" => Tone::Good,
        "failed" | "disabled" => Tone::Bad,
        "retrying" | "pending" => Tone::Warn,
        s if s.starts_with('2') => Tone::Good,
        _ => Tone::Bad,
    }
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Prints rows as a table with aligned columns (plain tab-free lines, so
/// that `grep` and `awk` work on it too).
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(visible_len(cell));
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.into_iter().enumerate() {
            out.push_str(&cell);
            if i < last {
                let pad = widths[i].saturating_sub(visible_len(&cell)) + 2;
                out.push_str(&" ".repeat(pad));
            }
        }
        out
    };
    outln!(
        "{}",
        line(
            headers
                .iter()
                .map(|h| paint(&h.to_uppercase(), Tone::Dim))
                .collect()
        )
    );
    for row in rows {
        outln!("{}", line(row.clone()));
    }
}

/// Length of `text` on screen, ANSI colour sequences excluded.
fn visible_len(text: &str) -> usize {
    let mut len = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => len += 1,
        }
    }
    len
}

/// A JSON value as a table cell: strings bare, null as `-`, arrays comma-joined.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Prints the fields of an object as `key  value` lines.
pub fn print_fields(object: &Value) {
    let Some(map) = object.as_object() else {
        print_json(object);
        return;
    };
    let width = map.keys().map(|k| k.len()).max().unwrap_or(0);
    for (key, value) in map {
        let shown = match value {
            Value::Object(_) => value.to_string(),
            Value::Array(items) if items.iter().any(Value::is_object) => value.to_string(),
            _ => cell(value),
        };
        outln!("{key:<width$}  {shown}");
    }
}
