//! Announcements of webhook changes made by any instance.
//!
//! A trigger (see the migration) notifies channel `webhook_changes`, with
//! the webhook's id, whenever a webhook changes in a way that affects
//! routing or signing. One task per store listens on a connection of its
//! own, gathers the ids in [`PendingChanges`] and bumps a counter that the
//! engine watches: it then reads those webhooks again, not every webhook.
//! After (re)connecting the listener marks every webhook changed, since
//! changes made while it was not listening were missed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use super::pool::Connector;
use crate::store::PendingChanges;

/// Pause between attempts to listen again after the connection was lost.
const RELISTEN_AFTER: Duration = Duration::from_millis(500);

/// Listens until the store is dropped (the task is aborted then).
pub(super) async fn listen(
    connector: Arc<Connector>,
    pending: Arc<Mutex<PendingChanges>>,
    changes: watch::Sender<u64>,
) {
    loop {
        match connector.connect_raw().await {
            Ok((client, mut connection)) => {
                let (notified, mut notifications) = mpsc::unbounded_channel();
                // Reading notifications is what drives this connection, LISTEN included.
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if notified.send(n.payload().to_string()).is_err() {
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
                        gather(&pending, &changes, PendingChanges::set_all);
                        while let Some(id) = notifications.recv().await {
                            // A burst of changes is one wake-up.
                            gather(&pending, &changes, |p| {
                                p.add(&id);
                                while let Ok(id) = notifications.try_recv() {
                                    p.add(&id);
                                }
                            });
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

/// Applies `change` to what is pending, then bumps the counter: a watcher
/// woken by the bump finds the change.
fn gather(
    pending: &Mutex<PendingChanges>,
    changes: &watch::Sender<u64>,
    change: impl FnOnce(&mut PendingChanges),
) {
    change(&mut pending.lock().unwrap_or_else(PoisonError::into_inner));
    changes.send_modify(|n| *n += 1);
}
