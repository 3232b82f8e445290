-- Transactions as the Commerce API shows them: each names the processor it went to (a failed-over
-- authorization has one row per processor tried), and statuses are spelled `succeeded` / `failed` /
-- `pending`. Older rows take their payment's processor, which is the one every step after the
-- authorization went to. (0008 is taken on another branch; this is 0009 on both backends.)

ALTER TABLE payment_transactions ADD COLUMN processor TEXT;

UPDATE payment_transactions SET processor = (
    SELECT payments.processor FROM payments WHERE payments.id = payment_transactions.payment_id
) WHERE processor IS NULL;

UPDATE payment_transactions SET status = 'succeeded' WHERE status = 'success';
UPDATE payment_transactions SET status = 'failed' WHERE status = 'failure';
