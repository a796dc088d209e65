-- Issue 9: every loan has a contract the supplier and the funder sign. The gateway renders it
-- when credit requests the loan, sends it to the supplier, and sends the request to the
-- funder only once the supplier has signed; the funder's approval or disbursal carries the
-- contract's hash under its own signature. Both signed messages are kept as they arrived.
ALTER TABLE funding_requests ADD COLUMN contract text;
ALTER TABLE funding_requests ADD COLUMN contract_hash text;
-- The terms credit asked for (the LoanRequested), sent to the funder once the supplier signed.
ALTER TABLE funding_requests ADD COLUMN terms jsonb;
ALTER TABLE funding_requests ADD COLUMN supplier_signature jsonb;
ALTER TABLE funding_requests ADD COLUMN funder_signature jsonb;
ALTER TABLE funding_requests DROP CONSTRAINT funding_requests_state_check;
ALTER TABLE funding_requests ADD CONSTRAINT funding_requests_state_check
    CHECK (state IN ('awaiting_supplier', 'sent', 'approved', 'rejected', 'disbursed'));
-- A loan is disbursed only with both signatures on record.
ALTER TABLE funding_requests ADD CONSTRAINT disbursed_only_signed
    CHECK (state <> 'disbursed' OR contract IS NULL
           OR (supplier_signature IS NOT NULL AND funder_signature IS NOT NULL));
