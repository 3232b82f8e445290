-- Recording a delivery's outcome took its row out of the pending index (its predicate is the status)
-- and put it into the index on `finished_at`: two more index pages written per run. The index by
-- object covers every row, ended ones too (the lookups of an object's earlier pending deliveries
-- filter the status from the row), and the purge of ended deliveries walks the oldest rows along the
-- primary key instead of an index on `finished_at`. PostgreSQL's migration says what it saves there.
DROP INDEX webhook_deliveries_finished;
DROP INDEX webhook_deliveries_pending;
CREATE INDEX webhook_deliveries_by_object
    ON webhook_deliveries (webhook_id, object_created_at, object_id, seq);
