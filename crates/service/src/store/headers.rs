//! The header lists of attempts as the JSON both stores keep.

/// A header list as the JSON the stores keep (`[["name","value"],...]`),
/// byte for byte what `serde_json` writes.
///
/// By hand because it runs in the store's writer for both header lists of
/// every attempt: `serde_json` took 2.8 % of the service's CPU in the `batch`
/// benchmark (perf), mostly in its generic sequence machinery; values are
/// nearly always plain ASCII, which this copies in one piece.
pub(crate) fn headers_json(headers: &[(String, String)]) -> String {
    let size: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 6).sum();
    let mut out = String::with_capacity(size + 2);
    out.push('[');
    for (i, (name, value)) in headers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        push_json_string(&mut out, name);
        out.push(',');
        push_json_string(&mut out, value);
        out.push(']');
    }
    out.push(']');
    out
}

/// Appends `s` as a JSON string, escaped as `serde_json` escapes it.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    // The common case, nothing to escape, checked without branching per
    // byte (the compiler vectorises the fold) and copied in one piece.
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut plain_from = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII, so `i` is on a character boundary.
        out.push_str(&s[plain_from..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        plain_from = i + 1;
    }
    out.push_str(&s[plain_from..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::headers_json;

    #[test]
    fn header_json_is_what_serde_json_writes() {
        let lists: Vec<Vec<(String, String)>> = vec![
            vec![],
            vec![("content-length".into(), "0".into())],
            vec![
                ("x-webhook-signature".into(), "sha256=ab12".into()),
                ("user-agent".into(), "Smart-AI-Hub-Webhook/1.0".into()),
            ],
            vec![(
                "x-odd".into(),
                "quote\" back\\ nl\n cr\r tab\t bs\u{8} ff\u{c} nul\0 esc\u{1b} del\u{7f} é 中 🦀"
                    .into(),
            )],
            vec![("".into(), "".into()), ("\u{1f}".into(), "\"".into())],
        ];
        for list in lists {
            let expected = serde_json::to_string(&list).unwrap();
            assert_eq!(headers_json(&list), expected);
            let back: Vec<(String, String)> = serde_json::from_str(&headers_json(&list)).unwrap();
            assert_eq!(back, list);
        }
    }
}
