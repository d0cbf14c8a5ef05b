-- +goose Up
-- Accounts. email is stored normalised (trimmed, lower-case), so the unique
-- constraint is what makes "one account per address" true under races.
CREATE TABLE users (
    id            TEXT        PRIMARY KEY,
    email         TEXT        NOT NULL UNIQUE,
    name          TEXT        NOT NULL,
    password_hash TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- Refresh tokens, stored as SHA-256 of the secret. Tokens rotated from one
-- login share family_id; reuse of a spent one revokes the family.
CREATE TABLE refresh_tokens (
    id         TEXT        PRIMARY KEY,
    family_id  TEXT        NOT NULL,
    user_id    TEXT        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT        NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- +goose Down
DROP TABLE refresh_tokens;
DROP TABLE users;
