-- Issue 11: an application split across a programme's funders. The whole one ends `split`;
-- each part is an application of its own (`<id>/<n>`), with its funder, request and loan, and
-- names the application it is a part of.
ALTER TABLE programmes DROP CONSTRAINT programmes_routing_check;
ALTER TABLE programmes ADD CONSTRAINT programmes_routing_check
    CHECK (routing IN ('cheapest', 'named', 'split'));

ALTER TABLE applications DROP CONSTRAINT applications_state_check;
ALTER TABLE applications ADD CONSTRAINT applications_state_check
    CHECK (state IN ('awaiting_buyer', 'requested', 'funded', 'refused', 'split'));
ALTER TABLE applications ADD COLUMN split_of text;
CREATE INDEX applications_parts ON applications (split_of) WHERE split_of IS NOT NULL;
