-- The events a token batch's delivery job carries (kind `webhook.deliver_carried`), kept beside the job
-- instead of in its payload, as on SQLite (its migration says why there). Here a large payload is
-- stored out of line already (TOAST) and an update that does not change it does not copy it; the table
-- keeps one layout for both backends, and a job row the claim and the end rewrite stays small.
CREATE TABLE carried_events (
    job_id UUID PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    events TEXT NOT NULL
);
