//! Responses made from fuzz input: well-formed ones with what the client
//! must make of them, mutations, and how they are split into writes.

use webhook_outbound::Outcome;

use super::{
    Checked, HEADER_SLOTS, KEPT_HEADERS, KEPT_LOCATION, KEPT_VALUE, MAX_EXCERPT, MAX_HEAD,
};

/// Input bytes read as a source of choices; zeros once it runs out.
pub(super) struct Entropy<'a>(pub(super) &'a [u8]);

impl<'a> Entropy<'a> {
    pub(super) fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        let wide = usize::from(u16::from_le_bytes([self.byte(), self.byte()]));
        wide % n
    }

    /// True one time in `n`; false once the input runs out, so that short
    /// inputs take the common paths.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == n - 1
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    pub(super) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

/// How the generated body is framed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length,
    Chunked,
    Close,
}

/// What the client must report for a well-formed response.
pub(super) struct Expected {
    status: u16,
    headers: Vec<(String, String)>,
    retry_after: Option<String>,
    location: Option<String>,
    /// The whole body (before the client cuts it to its excerpt).
    body: Vec<u8>,
    /// Where the final head ends in the served bytes.
    head_end: usize,
    /// Served bytes (the response is cut short when below its length).
    served: usize,
    full_len: usize,
    /// More headers than the client has slots for: an invalid response.
    too_many_headers: bool,
    /// The head may exceed the client's limit, depending on how it is read.
    oversized_head: bool,
}

impl Expected {
    pub(super) fn check(&self, outcome: &Outcome) -> Checked {
        if self.oversized_head {
            // Accepted or refused depending on read sizes; the promises hold either way.
            return Checked::PromisesOnly;
        }
        if self.too_many_headers || self.served < self.head_end {
            assert_eq!(outcome.status, None, "{outcome:?}");
            return Checked::Refused;
        }
        assert_eq!(outcome.status, Some(self.status), "{outcome:?}");
        assert_eq!(outcome.response_headers, self.headers, "{outcome:?}");
        assert_eq!(outcome.retry_after, self.retry_after, "{outcome:?}");
        assert_eq!(outcome.location, self.location, "{outcome:?}");
        let excerpt = text(&self.body[..self.body.len().min(MAX_EXCERPT)]);
        if self.served == self.full_len {
            assert_eq!(outcome.body_excerpt, excerpt, "{outcome:?}");
            Checked::Exact
        } else {
            // Bodies are ASCII and lone 0xFF bytes: every prefix decodes to a prefix.
            assert!(
                excerpt.starts_with(&outcome.body_excerpt),
                "{:?} is not a prefix of {excerpt:?}",
                outcome.body_excerpt
            );
            Checked::Prefix
        }
    }
}

/// Lossy text with NULs replaced, as the client keeps it.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{FFFD}")
}

const STATUSES: &[u16] = &[
    200, 200, 201, 202, 204, 301, 302, 304, 307, 400, 404, 410, 429, 500, 503, 599,
];
const NAMES: &[&str] = &[
    "X-Request-Id",
    "Server",
    "Retry-After",
    "retry-after",
    "Location",
    "Set-Cookie",
    "X-Empty",
    "Date",
    "Connection",
];
const VALUE_BYTES: &[u8] = b"abcxyzABCXYZ0123456789 -_.,;:/=?&%\"'()<>[]{}@!#$*+|~^`\\\xe9\xff\x80";
const BODY_BYTES: &[u8] = b"{}[]\":,abc 123\n\r\t\0\xff";

/// A valid response chosen by `e`, and what the client must make of it.
pub(super) fn well_formed(e: &mut Entropy<'_>) -> (Vec<u8>, Expected) {
    // Drawn first, so that short inputs reach the cut as often as long ones.
    let cut = e.one_in(4).then(|| e.below(usize::from(u16::MAX)));
    let mut out = Vec::new();
    for _ in 0..e.below(3) {
        match e.below(3) {
            0 => out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n"),
            1 => out.extend_from_slice(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
            ),
            _ => {}
        }
    }
    let status = e.pick(STATUSES);
    let version = if e.one_in(4) { "1.0" } else { "1.1" };
    let reason = e.pick(&["", "OK", "Something Happened"]);
    out.extend_from_slice(format!("HTTP/{version} {status} {reason}\r\n").as_bytes());

    let no_body = status == 204 || status == 304;
    let framing = match e.below(3) {
        _ if no_body => Framing::Close,
        0 => Framing::Length,
        1 => Framing::Chunked,
        _ => Framing::Close,
    };
    let body: Vec<u8> = if no_body || e.one_in(4) {
        Vec::new()
    } else {
        let len = if e.one_in(8) {
            e.below(4096)
        } else {
            e.below(600)
        };
        (0..len).map(|_| e.pick(BODY_BYTES)).collect()
    };

    let count = if e.one_in(16) {
        HEADER_SLOTS + 2
    } else {
        e.below(40)
    };
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    let mut oversized_head = false;
    for i in 0..count {
        let name = if e.one_in(4) {
            format!("X-H{i}")
        } else {
            e.pick(NAMES).to_string()
        };
        let len = match e.below(32) {
            31 => 600,
            30 if e.one_in(4) => {
                oversized_head = true;
                MAX_HEAD + 100
            }
            _ => e.below(24),
        };
        let mut value: Vec<u8> = (0..len).map(|_| e.pick(VALUE_BYTES)).collect();
        // Surrounding whitespace is not part of a value.
        while value.last() == Some(&b' ') {
            value.pop();
        }
        while value.first() == Some(&b' ') {
            value.remove(0);
        }
        headers.push((name, value));
    }
    let framing_header = match framing {
        Framing::Length => Some(("Content-Length", body.len().to_string().into_bytes())),
        Framing::Chunked => Some(("Transfer-Encoding", b"chunked".to_vec())),
        Framing::Close => None,
    };
    if let Some((name, value)) = framing_header {
        let at = e.below(headers.len() + 1);
        headers.insert(at, (name.to_string(), value));
    }
    for (name, value) in &headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let head_end = out.len();

    if framing == Framing::Chunked {
        let mut rest = &body[..];
        while !rest.is_empty() {
            let n = (1 + e.below(300)).min(rest.len());
            let size = if e.one_in(2) {
                format!("{n:x}")
            } else {
                format!("{n:X}")
            };
            out.extend_from_slice(size.as_bytes());
            if e.one_in(6) {
                out.extend_from_slice(b";ext=1");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\n");
        if e.one_in(4) {
            out.extend_from_slice(b"X-Trailer: yes\r\n");
        }
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(&body);
    }

    let full_len = out.len();
    let served = cut.map_or(full_len, |at| at % (full_len + 1));
    out.truncate(served);

    let find = |wanted: &str, max: usize| {
        headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| text(&value[..value.len().min(max)]))
    };
    let expected = Expected {
        status,
        headers: headers
            .iter()
            .take(KEPT_HEADERS)
            .map(|(name, value)| {
                (
                    name.to_ascii_lowercase(),
                    text(&value[..value.len().min(KEPT_VALUE)]),
                )
            })
            .collect(),
        retry_after: find("retry-after", KEPT_VALUE),
        location: if (300..400).contains(&status) {
            find("location", KEPT_LOCATION)
        } else {
            None
        },
        body: if no_body { Vec::new() } else { body },
        head_end,
        served,
        full_len,
        too_many_headers: headers.len() > HEADER_SLOTS,
        oversized_head,
    };
    (out, expected)
}

/// A few flips, insertions, deletions and duplications.
pub(super) fn mutate(e: &mut Entropy<'_>, mut bytes: Vec<u8>) -> Vec<u8> {
    const TOKENS: &[&[u8]] = &[
        b"\r\n",
        b"\r\n\r\n",
        b":",
        b" ",
        b"\n",
        b"\0",
        b"chunked",
        b"Content-Length: ",
        b"Transfer-Encoding: chunked\r\n",
        b"ffffffffffffffff",
        b"-1",
        b";",
        b"HTTP/1.1 ",
        b"100",
        b"\xff",
    ];
    for _ in 0..=e.below(4) {
        let at = e.below(bytes.len() + 1);
        match e.below(5) {
            0 if at < bytes.len() => bytes[at] ^= 1 << e.below(8),
            1 => bytes.insert(at, e.byte()),
            2 if at < bytes.len() => {
                let end = (at + 1 + e.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
            3 if at < bytes.len() => {
                let end = (at + 1 + e.below(64)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => {
                let token = e.pick(TOKENS);
                bytes.splice(at..at, token.iter().copied());
            }
        }
    }
    bytes
}

/// Up to three writes, split where `e` says.
pub(super) fn split(e: &mut Entropy<'_>, mut bytes: Vec<u8>) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    for _ in 0..e.below(3) {
        let at = e.below(bytes.len() + 1);
        let tail = bytes.split_off(at);
        pieces.push(bytes);
        bytes = tail;
    }
    pieces.push(bytes);
    pieces
}
