-- Ledger hash format 2 (issue 7): the exact bytes a transaction's hash is taken over are
-- stored with it, tagged with their format. Rows written before keep format 1.
ALTER TABLE ledger_transactions ADD COLUMN format text NOT NULL DEFAULT 'poolfin-ledger/1';
ALTER TABLE ledger_transactions ALTER COLUMN format DROP DEFAULT;
ALTER TABLE ledger_transactions ADD COLUMN hashed bytea;
