-- The processor's reference of a refund it accepted and answers later by notification (Adyen's refund
-- pspReference), so that the notification finds the refund. Looked up within one payment's refunds,
-- which `refunds_by_payment` already serves.

ALTER TABLE refunds ADD COLUMN processor_reference TEXT;
