//! The service's black-box tests that need a tool from outside the
//! repository: a PostgreSQL server on 127.0.0.1:5432, node and python3 (the
//! guide's receivers), headless Chromium with chromedriver (the portal), a
//! tmpfs mount (a full disk).
//!
//! Their harness (`harness`) reports a test whose tool is missing as
//! ignored, with the reason, instead of letting it pass without having run;
//! under `CI=true` a missing tool fails the test. Tests are named
//! `<module>::<test>`, so `cargo test --test tools portal_browser` runs one
//! part.

#[path = "../browser_support/mod.rs"]
mod browser_support;
#[path = "../common/mod.rs"]
mod common;
#[path = "../delivery_support/mod.rs"]
mod delivery_support;
#[path = "../harness/mod.rs"]
mod harness;
#[path = "../postgres_support/mod.rs"]
mod postgres_support;

mod delivery_guide_receivers;
mod portal_browser;
mod postgres_cluster;
mod postgres_rolling_upgrade;
mod postgres_service;
mod postgres_store_outage;
mod reliability_disk_full;
mod store_contract;

fn main() {
    let parts = [
        (
            "delivery_guide_receivers",
            delivery_guide_receivers::tests(),
        ),
        ("portal_browser", portal_browser::tests()),
        ("postgres_cluster", postgres_cluster::tests()),
        (
            "postgres_rolling_upgrade",
            postgres_rolling_upgrade::tests(),
        ),
        ("postgres_service", postgres_service::tests()),
        ("postgres_store_outage", postgres_store_outage::tests()),
        ("reliability_disk_full", reliability_disk_full::tests()),
        ("store_contract", store_contract::tests()),
    ];
    let tests = parts
        .into_iter()
        .flat_map(|(module, tests)| tests.into_iter().map(move |t| t.in_module(module)))
        .collect();
    harness::run(tests)
}
