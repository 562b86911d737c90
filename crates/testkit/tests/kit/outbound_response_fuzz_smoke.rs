//! A stable-toolchain smoke run of the `outbound_response` fuzz target: a few
//! thousand pseudo-random, generated and mutated responses (fixed seed,
//! reproducible) through the same harness, so the target cannot rot.
//! `cargo +nightly fuzz run outbound_response` in `fuzz/` explores further.

use std::collections::HashMap;

use webhook_testkit::response_fuzz::{Checked, ResponseFuzzer};

const ROUNDS: usize = 5000;

/// Raw responses (mode byte 2) the mutations start from.
const RAW_SEEDS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.0 500 Oops\r\n\r\nclose-delimited body",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1/x\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 429 Slow Down\r\nRetry-After: 120\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabcdef\r\n0\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\nanything",
    b"HTTP/2 200\r\n\r\n",
    b"SSH-2.0-OpenSSH_9.0\r\n",
];

#[tokio::test]
async fn outbound_client_survives_any_response() {
    let fuzzer = ResponseFuzzer::start().await.expect("the harness starts");
    let mut rng = fastrand::Rng::with_seed(0x5eed_0004);
    let mut tally: HashMap<Checked, usize> = HashMap::new();
    for n in 0..ROUNDS {
        let input: Vec<u8> = match n % 4 {
            // Generated responses, checked exactly: mode byte 0 then entropy.
            0 | 1 => std::iter::once(0)
                .chain((0..rng.usize(0..2000)).map(|_| rng.u8(..)))
                .collect(),
            // A known response, possibly with a few random bytes changed.
            2 => {
                let mut raw = RAW_SEEDS[n % RAW_SEEDS.len()].to_vec();
                for _ in 0..rng.usize(0..3) {
                    let at = rng.usize(0..raw.len());
                    raw[at] = rng.u8(..);
                }
                std::iter::once(2).chain(raw).collect()
            }
            // Generated responses, mutated: mode byte 3 then entropy.
            _ => std::iter::once(3)
                .chain((0..rng.usize(0..2000)).map(|_| rng.u8(..)))
                .collect(),
        };
        *tally.entry(fuzzer.run(&input).await).or_default() += 1;
    }
    eprintln!("outbound responses: {ROUNDS} served, checks {tally:?}");
    // The generator reaches every kind of check, so none of them is dead code.
    for kind in [Checked::Exact, Checked::Prefix, Checked::Refused] {
        assert!(tally.get(&kind).is_some_and(|n| *n > 50), "{tally:?}");
    }
}

#[tokio::test]
async fn short_and_empty_inputs() {
    let fuzzer = ResponseFuzzer::start().await.expect("the harness starts");
    for input in [
        &b""[..],
        b"\x00",
        b"\x01",
        b"\x02",
        b"\x03",
        b"\x02HTTP/1.1",
        b"\x02\r\n\r\n",
        // The fuzz target's first finding: a status of 000 was reported.
        b"\x02HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n",
        b"\xf3\xb5\xb3\xe2\x0c\xff\x0c\x24\x0c\xff\xff\xff\xff\x0c\x0c\x0c\x0c\x00\x00\x0c\xfd\x09\x00",
    ] {
        fuzzer.run(input).await;
    }
}
