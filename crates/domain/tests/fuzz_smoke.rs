//! A stable-toolchain smoke run of the `fuzz/` targets: a few thousand
//! pseudo-random and mutated inputs (fixed seed, reproducible) through the
//! same entry points, asserting no panic and the invariants the targets check.
//! `cargo +nightly fuzz run <target>` in `fuzz/` explores far further.

use webhook_domain::address::AddressPolicy;
use webhook_domain::envelope::EventInput;
use webhook_domain::webhook::WebhookUrl;
use webhook_verify::{StandardHeaders, sign_legacy, verify_legacy, verify_standard};

const ROUNDS: usize = 3000;

const EVENT_SEEDS: &[&str] = &[
    r#"{"eventType":"user.created","userId":"u-1","data":{"userId":"u-1"}}"#,
    r#"{"id":"evt_1","eventType":"credit.purchased","userId":"u","data":{"amount":10},"metadata":{"service":"core-service","timestamp":"2025-01-01T00:00:00.000Z"}}"#,
    r#"{"eventType":"*","userId":"","data":null}"#,
    r#"{"eventType":"user.login","userId":"\u0000\ud83d\ude00","data":[1,2,{"a":"b"}]}"#,
];

const URL_SEEDS: &[&str] = &[
    "https://example.com/hook",
    "http://127.0.0.1:8080/x",
    "https://[::ffff:127.0.0.1]/",
    "https://0x7f.1/",
    "https://017700000001/",
    "https://user:pw@example.com/",
    "https://exa mple.com/#frag",
    "https://169.254.169.254/latest",
];

/// Applies one random mutation: flip, insert, delete, duplicate a slice, or splice a token.
fn mutate(rng: &mut fastrand::Rng, input: &[u8]) -> Vec<u8> {
    const TOKENS: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b"\\u0000",
        b":",
        b",",
        b"null",
        b"1e999",
        b"-0",
        b"\xff",
        b"\xf0\x9f\x98",
        b"%00",
        b"@",
        b"[::1]",
        b"0x",
        b".",
        b"//",
    ];
    let mut out = input.to_vec();
    for _ in 0..rng.usize(1..4) {
        let at = rng.usize(0..=out.len());
        match rng.u8(0..5) {
            0 if !out.is_empty() => {
                let i = rng.usize(0..out.len());
                out[i] ^= 1 << rng.u8(0..8);
            }
            1 => out.insert(at, rng.u8(..)),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 if at < out.len() => {
                let end = rng.usize(at..=out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            _ => {
                let token = TOKENS[rng.usize(0..TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
        }
    }
    out
}

fn random_bytes(rng: &mut fastrand::Rng) -> Vec<u8> {
    (0..rng.usize(0..200)).map(|_| rng.u8(..)).collect()
}

#[test]
fn event_parsing_validation_and_envelopes() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0001);
    let (mut valid, mut invalid) = (0, 0);
    for n in 0..ROUNDS {
        let input = match n % 3 {
            0 => random_bytes(&mut rng),
            _ => mutate(&mut rng, EVENT_SEEDS[n % EVENT_SEEDS.len()].as_bytes()),
        };
        let Ok(parsed) = serde_json::from_slice::<EventInput>(&input) else {
            invalid += 1;
            continue;
        };
        match parsed.validate(1_735_689_600_000) {
            Ok(event) => {
                valid += 1;
                let bytes = event.envelope_bytes();
                let json: serde_json::Value =
                    serde_json::from_slice(&bytes).expect("an envelope is valid JSON");
                assert_eq!(json["id"], event.id.to_string());
                assert_eq!(json["eventType"], event.event_type.to_string());
                assert_eq!(bytes, event.envelope_bytes(), "envelopes are deterministic");
            }
            Err(_) => invalid += 1,
        }
    }
    eprintln!("events: {ROUNDS} inputs, {valid} valid, {invalid} rejected");
    assert!(valid > 0, "the mutations keep some inputs valid");
}

#[test]
fn webhook_url_parsing() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0002);
    let strict = AddressPolicy::new(Vec::new(), false);
    let (mut accepted, mut refused) = (0, 0);
    for n in 0..ROUNDS {
        let input = match n % 4 {
            0 => random_bytes(&mut rng),
            _ => mutate(&mut rng, URL_SEEDS[n % URL_SEEDS.len()].as_bytes()),
        };
        let text = String::from_utf8_lossy(&input);
        for insecure in [false, true] {
            match WebhookUrl::parse(&text, &strict, insecure) {
                Ok(url) => {
                    accepted += 1;
                    // Whatever is accepted re-parses to itself.
                    let again = WebhookUrl::parse(url.as_str(), &strict, insecure)
                        .expect("an accepted URL parses again");
                    assert_eq!(again.as_str(), url.as_str());
                }
                Err(_) => refused += 1,
            }
        }
    }
    eprintln!(
        "urls: {} parses, {accepted} accepted, {refused} refused",
        2 * ROUNDS
    );
}

#[test]
fn signature_verification() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0003);
    let secret = "whsec_fuzz_smoke_secret";
    let body = br#"{"id":"evt_1","eventType":"user.created"}"#;
    let good = sign_legacy(secret, body);
    verify_legacy(secret, body, Some(&good)).expect("the signature verifies");
    for n in 0..ROUNDS {
        let header = mutate(&mut rng, good.as_bytes());
        let header = String::from_utf8_lossy(&header);
        // Hex is read case-insensitively and the header trimmed: the same signature.
        if header.trim().to_ascii_lowercase() != good {
            assert!(
                verify_legacy(secret, body, Some(&header)).is_err(),
                "{header}"
            );
        }
        let other_body = mutate(&mut rng, body);
        if other_body != body {
            assert!(verify_legacy(secret, &other_body, Some(&good)).is_err());
        }
        let garbage = String::from_utf8_lossy(&random_bytes(&mut rng)).into_owned();
        let ts = if n % 2 == 0 {
            "1735689600".to_string()
        } else {
            garbage.clone()
        };
        let headers = StandardHeaders {
            id: Some("evt_1"),
            timestamp: Some(&ts),
            signature: Some(&garbage),
        };
        assert!(verify_standard(secret, headers, body, 1_735_689_600, 300).is_err());
    }
    eprintln!(
        "signatures: {} forged headers and bodies, none accepted",
        3 * ROUNDS
    );
}
