-- Per-webhook delivery controls (payload filter, rate limit, retry schedule,
-- timeout) as one JSON object; NULL when a webhook uses none of them, so
-- existing webhooks behave exactly as before. jsonb, so that an update can
-- merge the controls it changes into the stored ones in one statement.
ALTER TABLE webhooks ADD COLUMN delivery_controls jsonb;
-- A change of the controls is a change of routing: announced like the
-- others (a separate trigger, so the first one stays as it is; two
-- announcements of one webhook in one transaction are delivered once).
CREATE TRIGGER webhooks_announce_controls AFTER UPDATE OF delivery_controls ON webhooks
    FOR EACH ROW
    WHEN (OLD.delivery_controls IS DISTINCT FROM NEW.delivery_controls)
    EXECUTE FUNCTION notify_webhook_change();
