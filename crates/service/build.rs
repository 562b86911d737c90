//! Compiles the long reliability tests in when `WEBHOOK_LONG_TESTS=1`.
//!
//! They are marked `#[cfg_attr(not(long_tests), ignore = ...)]`, so a normal
//! `cargo test` lists them as ignored (visible in its summary) instead of
//! passing them without running anything.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(long_tests)");
    println!("cargo::rerun-if-env-changed=WEBHOOK_LONG_TESTS");
    println!("cargo::rerun-if-changed=build.rs");
    if matches!(
        std::env::var("WEBHOOK_LONG_TESTS").as_deref(),
        Ok("1" | "true")
    ) {
        println!("cargo::rustc-cfg=long_tests");
    }
}
