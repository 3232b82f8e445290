-- Where an audit event came from: the client's address and request id (absent for what no request
-- caused: jobs, start-up) and the node that wrote it. Operators list across accounts by time.
ALTER TABLE audit_events ADD COLUMN remote_addr TEXT;
ALTER TABLE audit_events ADD COLUMN request_id TEXT;
ALTER TABLE audit_events ADD COLUMN node TEXT;
CREATE INDEX audit_events_by_time ON audit_events (at, id);
