-- 001: first table. Not idempotent on purpose: running it twice fails, so a test proves that
-- production-migrate applies each file once.
CREATE TABLE visits (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    at TEXT NOT NULL DEFAULT (datetime('now'))
);
