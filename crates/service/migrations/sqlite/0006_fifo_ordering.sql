-- Ordered (FIFO) delivery. A delivery of a webhook with `"ordering": "fifo"`
-- carries the order it belongs to (`ordering_key`: '' for the whole webhook,
-- the user id with `"orderingKey": "userId"`) and its place in it
-- (`fifo_seq`, taken from the webhook's counter as it is inserted, so in
-- acknowledgement order). Both are NULL for every other delivery: webhooks
-- without ordering store and read nothing more.
ALTER TABLE webhooks ADD COLUMN fifo_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
ALTER TABLE deliveries ADD COLUMN fifo_seq INTEGER;
-- The unfinished deliveries of each order, first in line first: the claim
-- seeks once per order to its head, and a delivery is blocked when an
-- earlier one of its order is here.
CREATE INDEX deliveries_fifo ON deliveries (webhook_id, ordering_key, fifo_seq)
    WHERE ordering_key IS NOT NULL AND status IN ('pending', 'retrying');
-- Ordered deliveries leave the per-webhook index of waiting work: it is
-- searched by due time, which would offer every delivery of an order and
-- not only its head. Unordered ones are found exactly as before.
DROP INDEX deliveries_due_webhook;
CREATE INDEX deliveries_due_webhook ON deliveries (webhook_id, next_attempt_at)
    WHERE lease_owner IS NULL AND status IN ('pending', 'retrying') AND ordering_key IS NULL;
