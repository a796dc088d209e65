-- Issue 9: the splitter pays only loans credit holds. Credit publishes every LoanOpened on
-- credit.repayment-instructions.v1 too (the pool's order: before any instruction naming the
-- loan); the splitter keeps each loan's principal and what its splits repaid of it, and the
-- database refuses repaying more principal than was lent.
CREATE TABLE loans (
    loan_id     text          PRIMARY KEY,
    pool_id     text          NOT NULL,
    funder_id   text          NOT NULL,
    principal   numeric(18,2) NOT NULL CHECK (principal > 0),
    repaid      numeric(18,2) NOT NULL DEFAULT 0 CHECK (repaid >= 0 AND repaid <= principal),
    opened_at   timestamptz   NOT NULL DEFAULT now()
);
