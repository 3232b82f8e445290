-- The pending deliveries' index was keyed by (webhook, object, seq). Object ids are random (UUIDv4), so
-- every outbox row went to a random page of it: with many deliveries queued, a commit of tokens wrote
-- one more page per subscribed token. Keyed by the object's creation time before its id, the rows of
-- new objects go to the index's end, while an object's deliveries still share one key prefix, so that
-- its earlier pending rows are found as before.
ALTER TABLE webhook_deliveries ADD COLUMN object_created_at TIMESTAMPTZ;

-- Rows still pending get their object's creation time; the rows of an object that no longer exists (a
-- deleted token) share the earliest time among them, so that they still find one another.
UPDATE webhook_deliveries SET object_created_at = COALESCE(
    (SELECT t.created_at FROM tokens t WHERE t.id = webhook_deliveries.object_id),
    (SELECT p.created_at FROM payments p WHERE p.id = webhook_deliveries.object_id),
    (SELECT r.created_at FROM refunds r WHERE r.id = webhook_deliveries.object_id),
    (SELECT i.created_at FROM token_imports i WHERE i.id = webhook_deliveries.object_id),
    (SELECT MIN(e.created_at) FROM webhook_deliveries e
     WHERE e.webhook_id = webhook_deliveries.webhook_id AND e.object_id = webhook_deliveries.object_id
       AND e.status = 'pending'))
WHERE status = 'pending';

DROP INDEX webhook_deliveries_pending;
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, object_created_at, object_id, seq)
    WHERE status = 'pending';
