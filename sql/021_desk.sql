-- 021: the operator's desk (issue 25): one-time password-reset links and the
-- console's alerts as events. Functions: sql/functions/50_account_admin.sql,
-- sql/functions/50_console_alerts.sql.

-- A reset link given by an operator to an account holder (docs/api.md,
-- "Accounts on the console"). Only the token's hash is kept; a token works
-- once, until expires_at, and issuing another for the account voids the
-- earlier ones still unused.
CREATE TABLE password_resets (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    role       text NOT NULL CHECK (role IN ('rider', 'driver', 'operator')),
    account_id uuid NOT NULL,
    issued_by  text NOT NULL CHECK (length(issued_by) BETWEEN 1 AND 64),
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX password_resets_account ON password_resets (account_id) WHERE used_at IS NULL;

-- Each time a console alert is raised (src/console/alerts.c): the aggregate
-- of its two outbox events, alert.raised (seq 1) and alert.cleared (seq 2).
CREATE TABLE console_alerts (
    id         uuid PRIMARY KEY,
    alert      text NOT NULL CHECK (alert IN ('request_wait', 'match_rate', 'database')),
    detail     text NOT NULL CHECK (length(detail) <= 200),
    raised_at  timestamptz NOT NULL,
    cleared_at timestamptz CHECK (cleared_at >= raised_at)
);
