-- Accounts managed from the operator's desk (docs/api.md, "Accounts on the
-- console"): search, edit, one-time password-reset links. The daemon's
-- src/auth/manage.c and `ridehaild admin` call these, so both act alike.
-- Tables: sql/002_accounts.sql, sql/021_desk.sql.

-- A LIKE pattern that matches p_q anywhere, its wildcards taken literally.
CREATE OR REPLACE FUNCTION account_like(p_q text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    -- chr(92) is the backslash, LIKE's escape character
    SELECT '%' || replace(replace(replace(p_q, chr(92), chr(92) || chr(92)), '%', chr(92) || '%'), '_', chr(92) || '_') || '%'
$$;

-- Whether an account's fields match a search: email, name, phone (by its
-- digits too, when the search has three or more), plate, or the id itself.
CREATE OR REPLACE FUNCTION account_matches(p_q text, p_id uuid, p_email text, p_name text, p_phone text, p_plate text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT p_q IS NULL
        OR p_id::text = lower(p_q)
        OR p_email ILIKE account_like(p_q) OR p_name ILIKE account_like(p_q)
        OR coalesce(p_phone, '') ILIKE account_like(p_q) OR coalesce(p_plate, '') ILIKE account_like(p_q)
        OR (length(regexp_replace(p_q, '[^0-9]', '', 'g')) >= 3 AND p_phone IS NOT NULL
            AND regexp_replace(p_phone, '[^0-9]', '', 'g') LIKE '%' || regexp_replace(p_q, '[^0-9]', '', 'g') || '%')
$$;

-- One page of the accounts of a role (deleted ones left out), ordered by id
-- after p_after; p_disabled filters by standing when not NULL.
CREATE OR REPLACE FUNCTION account_search(p_role text, p_q text, p_disabled boolean, p_after uuid, p_limit integer)
RETURNS TABLE (account jsonb, id uuid) LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_role = 'rider' THEN
        RETURN QUERY SELECT rider_json(r), r.id FROM riders r
            WHERE r.deleted_at IS NULL AND (p_after IS NULL OR r.id > p_after)
              AND (p_disabled IS NULL OR r.disabled = p_disabled)
              AND account_matches(p_q, r.id, r.email, r.name, r.phone, NULL)
            ORDER BY r.id LIMIT p_limit;
    ELSIF p_role = 'driver' THEN
        RETURN QUERY SELECT driver_json(d), d.id FROM drivers d
            WHERE d.deleted_at IS NULL AND (p_after IS NULL OR d.id > p_after)
              AND (p_disabled IS NULL OR d.disabled = p_disabled)
              AND account_matches(p_q, d.id, d.email, d.name, d.phone, d.plate)
            ORDER BY d.id LIMIT p_limit;
    ELSE
        RETURN QUERY SELECT operator_json(o), o.id FROM operators o
            WHERE o.deleted_at IS NULL AND (p_after IS NULL OR o.id > p_after)
              AND (p_disabled IS NULL OR o.disabled = p_disabled)
              AND account_matches(p_q, o.id, o.email, o.name, NULL, NULL)
            ORDER BY o.id LIMIT p_limit;
    END IF;
END
$$;

-- Changes what p (validated by the caller) names: email, name, phone (null
-- clears it), disabled, and a driver's vehicle {type, make, model, color,
-- plate}. No row when there is no such live account. A taken email or plate
-- raises the unique violation of its index (drivers_plate_key, ..._email_key).
CREATE OR REPLACE FUNCTION account_edit(p_role text, p_id uuid, p jsonb)
RETURNS TABLE (account jsonb, credential_version integer, disabled boolean) LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := coalesce(p -> 'vehicle', '{}');
BEGIN
    IF p_role = 'rider' THEN
        RETURN QUERY UPDATE riders r SET email = coalesce(p ->> 'email', r.email), name = coalesce(p ->> 'name', r.name),
                phone = CASE WHEN p ? 'phone' THEN p ->> 'phone' ELSE r.phone END,
                disabled = coalesce((p ->> 'disabled')::boolean, r.disabled)
            WHERE r.id = p_id AND r.deleted_at IS NULL
            RETURNING rider_json(r), r.credential_version, r.disabled;
    ELSIF p_role = 'driver' THEN
        RETURN QUERY UPDATE drivers d SET email = coalesce(p ->> 'email', d.email), name = coalesce(p ->> 'name', d.name),
                phone = CASE WHEN p ? 'phone' THEN p ->> 'phone' ELSE d.phone END,
                disabled = coalesce((p ->> 'disabled')::boolean, d.disabled),
                vehicle_type = coalesce(v ->> 'type', d.vehicle_type), vehicle_make = coalesce(v ->> 'make', d.vehicle_make),
                vehicle_model = coalesce(v ->> 'model', d.vehicle_model),
                vehicle_color = coalesce(v ->> 'color', d.vehicle_color), plate = coalesce(v ->> 'plate', d.plate),
                updated_at = now()
            WHERE d.id = p_id AND d.deleted_at IS NULL
            RETURNING driver_json(d), d.credential_version, d.disabled;
    ELSE
        RETURN QUERY UPDATE operators o SET email = coalesce(p ->> 'email', o.email), name = coalesce(p ->> 'name', o.name),
                disabled = coalesce((p ->> 'disabled')::boolean, o.disabled)
            WHERE o.id = p_id AND o.deleted_at IS NULL
            RETURNING operator_json(o), o.credential_version, o.disabled;
    END IF;
END
$$;

-- A new reset link for a live account: voids the earlier unused ones.
-- Returns its expiry, or NULL when there is no such live account.
CREATE OR REPLACE FUNCTION account_reset_issue(p_role text, p_id uuid, p_token_hash bytea, p_ttl_s integer, p_by text)
RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
    expires timestamptz := now() + make_interval(secs => p_ttl_s);
BEGIN
    IF p_role = 'rider' THEN
        PERFORM 1 FROM riders WHERE id = p_id AND deleted_at IS NULL;
    ELSIF p_role = 'driver' THEN
        PERFORM 1 FROM drivers WHERE id = p_id AND deleted_at IS NULL;
    ELSE
        PERFORM 1 FROM operators WHERE id = p_id AND deleted_at IS NULL;
    END IF;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    DELETE FROM password_resets WHERE account_id = p_id AND role = p_role AND used_at IS NULL;
    INSERT INTO password_resets (token_hash, role, account_id, issued_by, expires_at)
    VALUES (p_token_hash, p_role, p_id, p_by, expires);
    RETURN expires;
END
$$;

-- Whether a reset token is usable (unused, unexpired, its account live):
-- asked before the new password is hashed, so that made-up tokens cost no
-- hashing.
CREATE OR REPLACE FUNCTION account_reset_usable(p_token_hash bytea) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM password_resets WHERE token_hash = p_token_hash AND used_at IS NULL
                   AND expires_at > now())
$$;

-- Uses a reset token: sets the account's password (which ends its tokens
-- and sessions: sql/functions/25_account_credentials.sql) and spends the
-- token. No row when the token is unknown, used, expired, or its account
-- gone.
CREATE OR REPLACE FUNCTION account_reset_redeem(p_token_hash bytea, p_hash text)
RETURNS TABLE (role text, id uuid, credential_version integer, disabled boolean) LANGUAGE plpgsql AS $$
DECLARE
    t password_resets;
BEGIN
    UPDATE password_resets x SET used_at = now()
        WHERE x.token_hash = p_token_hash AND x.used_at IS NULL AND x.expires_at > now() RETURNING * INTO t;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF t.role = 'rider' THEN
        RETURN QUERY UPDATE riders a SET password_hash = p_hash WHERE a.id = t.account_id AND a.deleted_at IS NULL
            RETURNING t.role, a.id, a.credential_version, a.disabled;
    ELSIF t.role = 'driver' THEN
        RETURN QUERY UPDATE drivers a SET password_hash = p_hash WHERE a.id = t.account_id AND a.deleted_at IS NULL
            RETURNING t.role, a.id, a.credential_version, a.disabled;
    ELSE
        RETURN QUERY UPDATE operators a SET password_hash = p_hash WHERE a.id = t.account_id AND a.deleted_at IS NULL
            RETURNING t.role, a.id, a.credential_version, a.disabled;
    END IF;
END
$$;
