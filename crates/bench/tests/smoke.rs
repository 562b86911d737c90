//! Every scenario in smoke mode: small counts, asserting correctness (no
//! loss, no failed request, the service alive), never speed.

use webhook_bench::{Settings, runs_on, scenarios, service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_without_loss() {
    let binary = service::locate_binary(None, false).expect("webhook-service binary");
    let settings = Settings {
        binary,
        database_url: None,
        smoke: true,
        events: None,
        concurrency: 16,
        rate: None,
    };
    // `cluster` needs PostgreSQL: `smoke_postgres.rs` runs it.
    for name in scenarios::ALL.iter().filter(|n| runs_on(n, &settings)) {
        let report = scenarios::run(name, &settings)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        println!("{}", report.to_json());
        let failures = report.smoke_failures();
        assert!(failures.is_empty(), "{name}: {failures:?}");
        // portal-reads: every read of the portal's pages answered 200.
        for key in ["reads_refused", "reads_refused_under_ingest"] {
            if let Some(refused) = report.extra.get(key) {
                assert_eq!(refused, &serde_json::json!([]), "{name}: {key}");
            }
        }
        if std::path::Path::new("/proc/stat").exists() {
            for key in ["machine_steal_pct", "machine_busy_pct"] {
                let pct = report.extra.get(key).and_then(|v| v.as_f64());
                assert!(
                    pct.is_some_and(|p| (0.0..=100.0).contains(&p)),
                    "{name}: {key} is {pct:?}"
                );
            }
            let busy = report.extra["machine_busy_pct"].as_f64().unwrap_or(0.0);
            assert!(
                busy > 0.0,
                "{name}: the machine was never busy while it ran"
            );
        }
        // The efficiency figure: a delivery's CPU against one plain HTTP
        // exchange's, both measured in this run (every scenario that
        // measures a ceiling; many-endpoints has none).
        if report.ceiling_per_sec > 0.0 && report.extra.contains_key("service_cpu_ms_per_delivery")
        {
            let ratio = report.extra.get("cpu_per_delivery_to_ceiling");
            assert!(
                ratio.and_then(|v| v.as_f64()).is_some_and(|x| x > 0.0),
                "{name}: cpu_per_delivery_to_ceiling is {ratio:?}"
            );
        }
        // The harness's own share of the machine (its receivers and
        // producers worked in every scenario).
        let harness = report.extra.get("harness_cpu_ms_per_delivery");
        assert!(
            harness.and_then(|v| v.as_f64()).is_some_and(|ms| ms > 0.0),
            "{name}: harness_cpu_ms_per_delivery is {harness:?}"
        );
        // The service timed its ingest commits (every scenario ingests).
        let commits = &report.extra["ingest_commit_ms"];
        assert!(
            commits["count"].as_u64().is_some_and(|n| n > 0),
            "{name}: no ingest commit in the service's histogram: {commits}"
        );
        assert!(
            commits["mean"].as_f64().is_some_and(|ms| ms > 0.0),
            "{name}: {commits}"
        );
        if *name == "tenants" {
            // Start-up, memory at rest and both stores' tails were measured.
            for key in [
                "fill_secs",
                "startup_secs",
                "rss_at_rest_mb",
                "small_latency_p99_median_ms",
                "p99_ratio",
            ] {
                let value = report.extra.get(key).and_then(|v| v.as_f64());
                assert!(value.is_some_and(|v| v > 0.0), "{name}: {key} is {value:?}");
            }
            assert_eq!(report.duplicates, 0, "{name}: duplicates");
        }
        if matches!(*name, "latency" | "isolation") {
            // Both were measured, not left out: a floor and a producer's wait
            // of zero would mean no request was answered.
            for key in ["floor_latency_ms", "ingest_latency_ms"] {
                let p50 = report
                    .extra
                    .get(key)
                    .and_then(|v| v["p50"].as_f64())
                    .unwrap_or_else(|| panic!("{name}: no {key} in the report"));
                assert!(p50 > 0.0, "{name}: {key} p50 is {p50}");
            }
        }
    }
}
