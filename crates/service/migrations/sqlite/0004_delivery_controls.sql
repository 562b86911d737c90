-- Per-webhook delivery controls (payload filter, rate limit, retry schedule,
-- timeout) as one JSON object; NULL when a webhook uses none of them, so
-- existing webhooks behave exactly as before.
ALTER TABLE webhooks ADD COLUMN delivery_controls TEXT;
