-- Every claim of a job bumps its lease generation, so that each run of a job holds a fence of its own:
-- the writes a run makes (its outcome, its job's finish) are guarded by the job id and this generation,
-- and a run that lost its lease (a paused node) can never write after another took the job over.
ALTER TABLE jobs ADD COLUMN lease_generation BIGINT NOT NULL DEFAULT 0;
