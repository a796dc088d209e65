-- Issue 11: a platform's loan is lent by its investors. The splitter keeps who committed what;
-- each repayment of the loan is divided among them by these shares and booked per investor
-- (account investor:<loan>/<investor>).
ALTER TABLE loans ADD COLUMN investors jsonb NOT NULL DEFAULT '[]';
