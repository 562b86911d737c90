//! Signature checks on arbitrary headers and bodies: no panic, and a forged
//! legacy signature over a fixed body is never accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_verify::{StandardHeaders, sign_legacy, verify_legacy, verify_standard};

const SECRET: &str = "whsec_fuzz_secret";
const BODY: &[u8] = br#"{"id":"evt_1","eventType":"user.created"}"#;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let good = sign_legacy(SECRET, BODY);
    if text.trim().to_ascii_lowercase() != good {
        assert!(verify_legacy(SECRET, BODY, Some(&text)).is_err());
    }
    let _ = verify_legacy(SECRET, data, Some(&good));
    let mut parts = text.splitn(3, '\n');
    let headers = StandardHeaders {
        id: parts.next(),
        timestamp: parts.next(),
        signature: parts.next(),
    };
    let _ = verify_standard(SECRET, headers, data, 1_735_689_600, 300);
});
