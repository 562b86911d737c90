//! Helpers shared by the `reliability_*` tests: the opt-in switch of the long
//! versions.
#![allow(dead_code)]

/// Set `WEBHOOK_LONG_TESTS=1` to run the long versions of the reliability tests.
pub const LONG_TESTS_VAR: &str = "WEBHOOK_LONG_TESTS";

/// Whether the long versions run; says so on stderr when they do not, so a
/// skip is never silent.
pub fn long_tests(test: &str) -> bool {
    let on = std::env::var(LONG_TESTS_VAR).is_ok_and(|v| v == "1" || v == "true");
    if !on {
        eprintln!("SKIPPED {test}: long version; set {LONG_TESTS_VAR}=1 to run it");
    }
    on
}
