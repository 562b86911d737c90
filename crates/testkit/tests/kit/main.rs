//! The test kit's own tests, one binary: its receivers over real sockets,
//! and the smoke run of the outbound client's response fuzz target.

mod outbound_response_fuzz_smoke;
mod receivers;
