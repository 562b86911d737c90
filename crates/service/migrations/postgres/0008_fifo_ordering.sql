-- Ordered (FIFO) delivery, as in the embedded store's migration 6. A
-- delivery of a webhook with `"ordering": "fifo"` carries the order it
-- belongs to (`ordering_key`: '' for the whole webhook, the user id with
-- `"orderingKey": "userId"`) and its place in it (`fifo_seq`). The place is
-- taken from the webhook's counter under the webhook row's lock inside the
-- ingest transaction, so two instances' commits cannot interleave out of
-- order: the later commit waits for the earlier one's lock and numbers after
-- it. Both are NULL for every other delivery, and only FIFO webhooks' rows
-- are ever locked for a number.
ALTER TABLE webhooks ADD COLUMN fifo_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
ALTER TABLE deliveries ADD COLUMN fifo_seq BIGINT;
-- The unfinished deliveries of each order, first in line first (the id
-- breaks ties between deliveries replayed together): the claim seeks once
-- per order to its head.
CREATE INDEX deliveries_fifo ON deliveries (webhook_id, ordering_key, fifo_seq, id)
    WHERE ordering_key IS NOT NULL AND status IN ('pending', 'retrying');
-- Ordered deliveries leave the per-webhook index of waiting work: it is
-- searched by due time, which would offer every delivery of an order and
-- not only its head.
DROP INDEX deliveries_due_webhook;
CREATE INDEX deliveries_due_webhook ON deliveries (webhook_id, next_attempt_at)
    WHERE lease_owner IS NULL AND status IN ('pending', 'retrying') AND ordering_key IS NULL;
