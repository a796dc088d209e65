-- Issue 9: trade-background verification. A facility may require every slip to be matched by
-- a purchase order, a goods receipt and an invoice within a tolerance (three-way match); the
-- documents are intake's, credit keeps how far they lie from the slip.
ALTER TABLE facilities
    ADD COLUMN require_trade_documents boolean      NOT NULL DEFAULT false,
    ADD COLUMN match_tolerance         numeric(12,8) NOT NULL DEFAULT 0.01;
-- The largest gap between a document's amount and the slip's, as a share of the slip; NULL
-- while a document is missing. Such slips are found through their own index.
ALTER TABLE receivables ADD COLUMN document_gap numeric(12,8);
CREATE INDEX receivables_unmatched ON receivables (pool_id)
    WHERE open_amount > 0 AND (document_gap IS NULL OR document_gap > 0);
