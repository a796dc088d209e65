-- Issue 12: the W3C trace context each published record carries (shared/tracing.py).
ALTER TABLE outbox ADD COLUMN traceparent text;
