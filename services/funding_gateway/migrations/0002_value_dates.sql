-- Issue 8: a disbursal's value date lies between the business day of its request and the day
-- it arrives. Requests sent before this column existed have none: their floor is the business
-- day (platform time zone) of sent_at.
ALTER TABLE funding_requests ADD COLUMN requested_on date;
-- The value date applied to a disbursal (the funder's, or the business day it arrived).
ALTER TABLE funder_responses ADD COLUMN value_date date;
