-- Each worker pool claims only its own kinds of job. The claim's two lookups (an expired lease to take
-- over, else the queued job due first) walk these indexes from the kind, so a backlog of one kind (a
-- receiver's deliveries that keep failing, say) is never read through by another pool's claim.
DROP INDEX jobs_ready;
DROP INDEX jobs_leased;
CREATE INDEX jobs_ready ON jobs (kind, run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_leased ON jobs (kind, lease_expires_at) WHERE status = 'running';
