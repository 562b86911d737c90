//! Any bytes a receiver answers with → the outbound client's response reader
//! (status line, headers, 1xx interims, Content-Length, chunked and
//! close-delimited bodies, truncated and oversized input): no panic, no wait
//! past a closed connection, the kept excerpt and headers within their
//! limits, and a well-formed response read exactly. The input's first byte
//! picks generated, raw or mutated responses (see
//! `webhook_testkit::response_fuzz`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use webhook_testkit::response_fuzz::ResponseFuzzer;

/// One runtime and responder for the whole run: starting them per input
/// would cost more than the input.
fn harness() -> &'static (tokio::runtime::Runtime, ResponseFuzzer) {
    static HARNESS: OnceLock<(tokio::runtime::Runtime, ResponseFuzzer)> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime");
        let fuzzer = runtime
            .block_on(ResponseFuzzer::start())
            .expect("the responder starts on 127.0.0.1");
        (runtime, fuzzer)
    })
}

fuzz_target!(|data: &[u8]| {
    let (runtime, fuzzer) = harness();
    let _checked = runtime.block_on(fuzzer.run(data));
});
