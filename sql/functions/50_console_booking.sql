-- Bookings taken by a dispatcher (the operator's console, docs/console.md):
-- the rider named by a phone number, found or made on the spot.
-- Tables: sql/002_accounts.sql.

-- The rider whose phone is p_phone (the oldest, should several share it),
-- or a new one made for it: named p_name (or "Phone booking"), with no
-- password ('!' is no argon2id hash: no password verifies against it) and
-- a placeholder email under the reserved .invalid domain (riders.email is
-- required and unique). created says which. Two bookings for the same new
-- number at once make one rider: the number is locked for the transaction.
CREATE OR REPLACE FUNCTION console_rider_for_phone(p_phone text, p_name text, OUT created boolean, OUT rider jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    r riders;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('ridehail.rider.phone:' || p_phone, 0));
    SELECT * INTO r FROM riders WHERE phone = p_phone ORDER BY created_at, id LIMIT 1;
    created := NOT FOUND;
    IF created THEN
        INSERT INTO riders (email, name, phone, password_hash)
        VALUES ('phone+' || regexp_replace(p_phone, '[^0-9]', '', 'g') || '.' || substr(md5(random()::text), 1, 8)
                || '@phone.invalid', COALESCE(p_name, 'Phone booking'), p_phone, '!')
        RETURNING * INTO r;
    END IF;
    rider := rider_json(r);
END
$$;
