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
-- ridehail_accounts sent by the trigger below, whoever made the change: the
-- daemon's own API, `ridehaild admin`, or SQL typed by hand.

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

-- Bumps the version when a credential changes and announces the account's
-- state; the NOTIFY is delivered only if the transaction commits. Runs only
-- for UPDATEs naming these columns (never on the trip path, which updates
-- drivers' status and version) and for DELETEs.
CREATE FUNCTION account_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    role text := TG_ARGV[0];
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO deleted_accounts (id, role) VALUES (OLD.id, role) ON CONFLICT (id) DO NOTHING;
        PERFORM pg_notify('ridehail_accounts', json_build_object(
            'role', role, 'id', OLD.id, 'cv', 2147483647, 'disabled', true, 'deleted', true)::text);
        RETURN OLD;
    END IF;
    IF NEW.password_hash IS DISTINCT FROM OLD.password_hash OR NEW.disabled IS DISTINCT FROM OLD.disabled
       OR NEW.deleted_at IS DISTINCT FROM OLD.deleted_at THEN
        NEW.credential_version := GREATEST(NEW.credential_version, OLD.credential_version + 1);
    END IF;
    IF NEW.credential_version IS DISTINCT FROM OLD.credential_version THEN
        PERFORM pg_notify('ridehail_accounts', json_build_object(
            'role', role, 'id', NEW.id, 'cv', NEW.credential_version, 'disabled', NEW.disabled,
            'deleted', NEW.deleted_at IS NOT NULL)::text);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER riders_credentials BEFORE UPDATE OF password_hash, disabled, deleted_at, credential_version
    ON riders FOR EACH ROW EXECUTE FUNCTION account_credentials_changed('rider');
CREATE TRIGGER drivers_credentials BEFORE UPDATE OF password_hash, disabled, deleted_at, credential_version
    ON drivers FOR EACH ROW EXECUTE FUNCTION account_credentials_changed('driver');
CREATE TRIGGER operators_credentials BEFORE UPDATE OF password_hash, disabled, deleted_at, credential_version
    ON operators FOR EACH ROW EXECUTE FUNCTION account_credentials_changed('operator');
CREATE TRIGGER riders_deleted BEFORE DELETE ON riders
    FOR EACH ROW EXECUTE FUNCTION account_credentials_changed('rider');
CREATE TRIGGER drivers_deleted BEFORE DELETE ON drivers
    FOR EACH ROW EXECUTE FUNCTION account_credentials_changed('driver');
CREATE TRIGGER operators_deleted BEFORE DELETE ON operators
    FOR EACH ROW EXECUTE FUNCTION account_credentials_changed('operator');
