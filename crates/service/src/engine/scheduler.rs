//! Brings due work from the store into free window slots, and prunes old logs.

use std::sync::Arc;
use std::time::Duration;

use webhook_domain::timefmt::now_ms;

use tokio::sync::mpsc;

use super::claims::Claims;
use super::dispatcher::Command;

/// How often the store is checked for due work when nothing wakes the scheduler.
const TICK: Duration = Duration::from_millis(250);
/// Deliveries claimed per query.
const PAGE: usize = 1000;

/// How often this instance proves it is alive and voids dead instances' claims.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// Proves this instance alive and voids the claims of instances that are
/// gone, every [`HEARTBEAT`], until the engine has stopped completely.
///
/// A task of its own: inside the claim loop, a slow or stuck claim query
/// delayed it past the claims' time to live, and other instances voided
/// this live instance's claims and sent its work a second time. It also
/// keeps beating through shutdown, while in-flight attempts finish and
/// their results are recorded (the engine aborts it last).
pub async fn beat(inner: Arc<Claims>) {
    loop {
        // The engine beat once as it started.
        tokio::time::sleep(HEARTBEAT).await;
        match tokio::time::timeout(HEARTBEAT, inner.store.heartbeat(&inner.owner)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot record the heartbeat"),
            Err(_) => tracing::warn!("the heartbeat took longer than {HEARTBEAT:?}; trying again"),
        }
        if !*inner.stopping.borrow() {
            match tokio::time::timeout(HEARTBEAT, inner.store.recover_claims(&inner.owner)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(
                    recovered = n,
                    "claims of instances that are gone are due again"
                ),
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot recover claims"),
                Err(_) => tracing::warn!("recovering claims took longer than {HEARTBEAT:?}"),
            }
        }
    }
}

/// Claims due deliveries until shutdown.
pub async fn run(inner: Arc<Claims>, dispatch: mpsc::UnboundedSender<Command>) {
    let mut stopping = inner.stopping.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = inner.wake_scheduler.notified() => {}
            _ = stopping.changed() => {}
        }
        if *stopping.borrow() {
            return;
        }
        loop {
            let room = inner.window.available().min(PAGE);
            if room == 0 {
                break;
            }
            let exclude = inner.window.saturated();
            let due = match inner
                .store
                .claim_due(&inner.owner, now_ms(), room as u32, exclude)
                .await
            {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim due deliveries");
                    break;
                }
            };
            let claimed = due.len();
            for job in &due {
                inner.window.force_reserve(&job.webhook_id);
            }
            if !due.is_empty() && dispatch.send(Command::Submit(due)).is_err() {
                return;
            }
            if claimed < room {
                break;
            }
        }
    }
}

/// Deletes finished deliveries past the retention period, in small chunks.
pub async fn prune(inner: Arc<Claims>, retention: Duration) {
    let mut stopping = inner.stopping.subscribe();
    loop {
        let before = now_ms() - retention.as_millis() as i64;
        let mut removed = 0;
        loop {
            match inner.store.prune(before).await {
                Ok(0) => break,
                Ok(n) => removed += n,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot prune delivery logs");
                    break;
                }
            }
            if *stopping.borrow() {
                return;
            }
            // Yield between chunks so ingest commits are not held back.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if removed > 0 {
            tracing::info!(removed, "pruned delivery logs past retention");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stopping.changed() => return,
        }
    }
}
