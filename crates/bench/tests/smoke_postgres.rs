//! The PostgreSQL store under the harness in smoke mode: the scenarios that
//! compare the stores, and `cluster`, run without loss, and the report
//! counts the database server's CPU. Listed as ignored when PostgreSQL is not reachable, unless
//! `WEBHOOK_REQUIRE_POSTGRES=1` (set by `.ci/run`), where it fails.

#[path = "../../service/tests/harness/mod.rs"]
mod harness;
#[path = "../../service/tests/postgres_support/mod.rs"]
mod postgres_support;

use harness::{DONE, Ran, Test, skip};
use postgres_support::TestDatabase;
use webhook_bench::{Settings, scenarios, service};

async fn throughput_batch_tenants_and_cluster_run_on_postgres_without_loss() -> Ran {
    let binary = service::locate_binary(None, false).expect("webhook-service binary");
    for name in ["throughput", "batch", "tenants", "cluster"] {
        // A database per scenario, as in the benchmark's own runs: the
        // webhooks of one scenario would otherwise receive the next one's
        // events too, at a receiver that is gone.
        let database = match TestDatabase::fresh().await {
            Ok(db) => db,
            Err(why) => return skip(why),
        };
        let settings = Settings {
            binary: binary.clone(),
            database_url: Some(database.url.clone()),
            smoke: true,
            events: None,
            concurrency: 16,
            rate: None,
        };
        let report = scenarios::run(name, &settings)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        println!("{}", report.to_json());
        assert_eq!(report.to_json()["store"], "postgres");
        let failures = report.smoke_failures();
        assert!(failures.is_empty(), "{name}: {failures:?}");
        if name == "cluster" {
            // Three instances took part, the killed one's work was taken
            // over (its claims wait for a stale heartbeat), and nothing
            // acknowledged was lost, before the kill or after.
            let extra = &report.extra;
            let shares = extra["ingest_share_pct"].as_array().expect("shares");
            assert_eq!(shares.len(), 3, "{shares:?}");
            assert!(
                shares.iter().all(|s| s.as_f64().is_some_and(|p| p > 0.0)),
                "every instance ingested: {shares:?}"
            );
            assert_eq!(extra["lost_acked_before_kill"], 0);
            assert_eq!(extra["lost_kill_phase"], 0);
            assert!(
                extra["acked_before_kill"].as_u64().is_some_and(|n| n > 0),
                "the kill came mid-run: {}",
                extra["acked_before_kill"]
            );
            assert!(extra["takeover_secs"].as_f64().is_some());
        }
        if std::path::Path::new("/proc").exists() {
            // Reported, as a number. Its value is the CPU of every
            // `postgres` process of the machine: while other tests' database
            // connections end during a smoke run (their CPU leaves the sum),
            // it can be 0 or below, so only the benchmark, on a quiet
            // machine, reads it as a figure.
            let pg = report.extra.get("postgres_cpu_ms_per_delivery");
            assert!(
                pg.and_then(|v| v.as_f64()).is_some_and(f64::is_finite),
                "{name}: the database server's CPU was not reported: {pg:?}"
            );
        }
    }
    DONE
}

fn main() {
    harness::run(vec![
        Test::new(
            "throughput_batch_tenants_and_cluster_run_on_postgres_without_loss",
            || Box::pin(throughput_batch_tenants_and_cluster_run_on_postgres_without_loss()),
        )
        .multi_thread(2),
    ]);
}
