-- Issue 9: trade-background verification and the encumbrance registry.

-- Purchase orders, goods receipts and invoices as the buyer's ERP/WMS booked them, per pool.
CREATE TABLE trade_documents (
    core_enterprise_id  text          NOT NULL,
    kind                text          NOT NULL
        CHECK (kind IN ('purchase_order', 'goods_receipt', 'invoice')),
    document_id         text          NOT NULL,
    pool_id             text          NOT NULL REFERENCES pools,
    amount              numeric(18,2) NOT NULL CHECK (amount > 0),
    payload_hash        text          NOT NULL,
    event_id            text          NOT NULL,
    received_at         timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (core_enterprise_id, kind, document_id)
);

-- Which documents a slip names (the slip's record of its trade background).
CREATE TABLE receivable_documents (
    core_enterprise_id  text NOT NULL,
    receivable_id       text NOT NULL,
    kind                text NOT NULL,
    document_id         text NOT NULL,
    face_amount         numeric(18,2) NOT NULL,
    PRIMARY KEY (core_enterprise_id, receivable_id, kind)
);
CREATE INDEX receivable_documents_by_document
    ON receivable_documents (core_enterprise_id, kind, document_id);

-- One invoice is financed once, platform-wide: its identity (seller tax id + code + number)
-- and its normalised content are each held by one open record, whoever booked it; released
-- when the slip it backs is paid or cancelled.
CREATE TABLE invoice_encumbrances (
    id                  bigserial   PRIMARY KEY,
    invoice_identity    text        NOT NULL,
    content_hash        text        NOT NULL,
    core_enterprise_id  text        NOT NULL,
    pool_id             text        NOT NULL,
    document_id         text        NOT NULL,
    state               text        NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'released')),
    registered_at       timestamptz NOT NULL DEFAULT now(),
    released_at         timestamptz
);
CREATE UNIQUE INDEX invoice_identity_open ON invoice_encumbrances (invoice_identity)
    WHERE state = 'open';
CREATE UNIQUE INDEX invoice_content_open ON invoice_encumbrances (content_hash)
    WHERE state = 'open';
CREATE INDEX invoice_encumbrances_by_document
    ON invoice_encumbrances (core_enterprise_id, document_id);
