//! Announcements of webhook changes made by any instance.
//!
//! A trigger (see the migration) notifies channel `webhook_changes` whenever
//! a webhook changes in a way that affects routing or signing. One task per
//! store listens on a connection of its own and bumps a counter that the
//! engine watches to reload its routing table. After (re)connecting it bumps
//! the counter once too, since changes made while it was not listening were
//! missed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use super::pool::Connector;

/// Pause between attempts to listen again after the connection was lost.
const RELISTEN_AFTER: Duration = Duration::from_millis(500);

/// Listens until the store is dropped (the task is aborted then).
pub(super) async fn listen(connector: Arc<Connector>, changes: watch::Sender<u64>) {
    loop {
        match connector.connect_raw().await {
            Ok((client, mut connection)) => {
                let (notified, mut notifications) = mpsc::unbounded_channel();
                // Reading notifications is what drives this connection, LISTEN included.
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(_))) => {
                                if notified.send(()).is_err() {
                                    return;
                                }
                            }
                            Some(Ok(_)) => {} // a notice
                            Some(Err(_)) | None => return,
                        }
                    }
                });
                match client.batch_execute("LISTEN webhook_changes").await {
                    Ok(()) => {
                        changes.send_modify(|n| *n += 1);
                        while notifications.recv().await.is_some() {
                            // A burst of changes is one reload.
                            while notifications.try_recv().is_ok() {}
                            changes.send_modify(|n| *n += 1);
                        }
                        tracing::warn!(
                            "lost the PostgreSQL connection that listens for webhook changes; reconnecting"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot listen for webhook changes"),
                }
                driver.abort();
            }
            Err(e) => tracing::debug!(error = %e, "cannot listen for webhook changes yet"),
        }
        tokio::time::sleep(RELISTEN_AFTER).await;
    }
}
