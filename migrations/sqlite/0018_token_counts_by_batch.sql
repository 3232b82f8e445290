-- Tokens are counted into token_day_counts by the batch writer, one upsert per account and day in the
-- batch's own commit, instead of by a trigger's upsert per inserted token. Deletions stay counted by
-- the tokens_counted_out trigger.
DROP TRIGGER tokens_counted_in;
