-- Application ids are unique platform-wide. The HTTP front claims an id for its pool before it
-- publishes the application, so a collision with another pool's id is refused at once
-- (409), never a 202 whose status URL answers 404 forever (issue 6, defect 7).
CREATE TABLE application_claims (
    application_id  text        PRIMARY KEY,
    pool_id         text        NOT NULL,
    claimed_at      timestamptz NOT NULL DEFAULT now()
);
