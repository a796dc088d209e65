-- Issue 10: a reservation credit made for an instruction the splitter refused is undone
-- (no loan stays reduced for money that never moved), and a reversed payment restores its
-- loans. What each loan's repayment changed is kept to undo it exactly.
ALTER TABLE repayments DROP CONSTRAINT repayments_state_check;
ALTER TABLE repayments ADD CONSTRAINT repayments_state_check
    CHECK (state IN ('reserved', 'confirmed', 'undone'));
ALTER TABLE repayments ADD COLUMN loans jsonb NOT NULL DEFAULT '[]';

-- The credit model's grade of each pool at its last day close: credit's instructions carry it,
-- so the splitter resolves a split rule's rate by grade from it (and hashes it with the split).
ALTER TABLE pools ADD COLUMN grade text CHECK (grade IN ('A', 'B', 'C', 'D', 'E'));
