-- The events a token batch's delivery job carries (kind `webhook.deliver_carried`), kept beside the job
-- instead of in its payload. A batch's events took 2.6 pages (7.9 KB on average) and SQLite
-- rewrites a row whose size changes whole, overflow pages included: the claim and the end of every
-- delivery job copied its events twice more, about three quarters of what a delivery run wrote. Here
-- they are written once, with the batch, and deleted with their job when it is purged.
CREATE TABLE carried_events (
    job_id BLOB PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    events TEXT NOT NULL
);
