-- 013: credentials that end at once. An account's credential_version goes
-- up whenever what its access tokens stand for ends: its password changes,
-- it is disabled or enabled, it is deleted. A token carries the version it
-- was issued under (its "cv" claim) and is refused once the account's has
-- moved on. deleted_at marks an account deleted: the row stays for the trips
-- that name it, with its email and personal data cleared.
--
-- The daemon checks every request against the accounts whose version is
-- above 0 or that are disabled or deleted, held in memory (the partial
-- indexes below find them), and learns of each change from a NOTIFY on
-- ridehail_accounts sent by a trigger on each account table, whoever made
-- the change: the daemon's own API, `ridehaild admin`, or SQL typed by hand.
-- The trigger function and the triggers that call it are in
-- sql/functions/25_account_credentials.sql (a trigger needs its function,
-- and functions are applied after the migrations).

ALTER TABLE riders ADD COLUMN credential_version integer NOT NULL DEFAULT 0,
                   ADD COLUMN deleted_at timestamptz;
ALTER TABLE drivers ADD COLUMN credential_version integer NOT NULL DEFAULT 0,
                    ADD COLUMN deleted_at timestamptz;
ALTER TABLE operators ADD COLUMN credential_version integer NOT NULL DEFAULT 0,
                      ADD COLUMN deleted_at timestamptz;

CREATE INDEX riders_credentials_changed ON riders (id)
    WHERE credential_version > 0 OR disabled OR deleted_at IS NOT NULL;
CREATE INDEX drivers_credentials_changed ON drivers (id)
    WHERE credential_version > 0 OR disabled OR deleted_at IS NOT NULL;
CREATE INDEX operators_credentials_changed ON operators (id)
    WHERE credential_version > 0 OR disabled OR deleted_at IS NOT NULL;

-- Accounts removed outright (a DELETE by hand): their ids, so that tokens
-- issued to them stay refused.
CREATE TABLE deleted_accounts (
    id         uuid PRIMARY KEY,
    role       text NOT NULL CHECK (role IN ('rider', 'driver', 'operator')),
    deleted_at timestamptz NOT NULL DEFAULT now()
);
