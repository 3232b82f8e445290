-- Tokens are counted into token_day_counts by the batch writer's statement itself (a CTE upserting
-- one row per account and day, in the session's shard), instead of by a statement trigger reading a
-- transition table. Deletions stay counted by the tokens_counted_out trigger.
DROP TRIGGER tokens_counted_in ON tokens;
DROP FUNCTION tokens_count_in();
