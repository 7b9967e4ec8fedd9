-- Credentials that end at once (tables and columns: sql/013_account_credentials.sql):
-- the trigger that bumps an account's credential_version and announces its
-- state on ridehail_accounts, and the triggers on riders, drivers and
-- operators that call it. The triggers are here, beside their function,
-- because a trigger can only be made once its function exists, and the
-- functions are applied after the migrations; CREATE OR REPLACE keeps them
-- as they are when the files are applied again.

-- Bumps the version when a credential changes and announces the account's
-- state; the NOTIFY is delivered only if the transaction commits. Runs only
-- for UPDATEs naming these columns (never on the trip path, which updates
-- drivers' status and version) and for DELETEs.
CREATE OR REPLACE FUNCTION account_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE TRIGGER riders_credentials BEFORE UPDATE OF password_hash, disabled, deleted_at, credential_version
    ON riders FOR EACH ROW EXECUTE FUNCTION account_credentials_changed('rider');
CREATE OR REPLACE TRIGGER drivers_credentials BEFORE UPDATE OF password_hash, disabled, deleted_at, credential_version
    ON drivers FOR EACH ROW EXECUTE FUNCTION account_credentials_changed('driver');
CREATE OR REPLACE TRIGGER operators_credentials BEFORE UPDATE OF password_hash, disabled, deleted_at, credential_version
    ON operators FOR EACH ROW EXECUTE FUNCTION account_credentials_changed('operator');
CREATE OR REPLACE TRIGGER riders_deleted BEFORE DELETE ON riders
    FOR EACH ROW EXECUTE FUNCTION account_credentials_changed('rider');
CREATE OR REPLACE TRIGGER drivers_deleted BEFORE DELETE ON drivers
    FOR EACH ROW EXECUTE FUNCTION account_credentials_changed('driver');
CREATE OR REPLACE TRIGGER operators_deleted BEFORE DELETE ON operators
    FOR EACH ROW EXECUTE FUNCTION account_credentials_changed('operator');
