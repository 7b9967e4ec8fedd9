-- The pricing book (tables: sql/015_pricing_book.sql): zones, versioned
-- tariffs, surge overrides and the log of every change. The daemon's admin
-- API (src/pricing/admin_api.c) writes through these, and reads the whole
-- book with pricing_book_json() (src/pricing/book_load.c); every change
-- bumps pricing_book.version and NOTIFYs ridehail_pricing in its
-- transaction, so every daemon on the database reads the book again.

-- ------------------------------------------------------------ the book

-- A change: the book's version moves, the log says who did what, and every
-- daemon listening hears of it (after the commit).
CREATE OR REPLACE FUNCTION pricing_bump(p_actor text, p_action text, p_subject text, p_detail jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    UPDATE pricing_book SET version = version + 1 RETURNING version INTO v;
    INSERT INTO pricing_log (actor, action, subject, detail, book_version)
    VALUES (p_actor, p_action, p_subject, COALESCE(p_detail, '{}'), v);
    PERFORM pg_notify('ridehail_pricing', v::text);
    RETURN v;
END
$$;

CREATE OR REPLACE FUNCTION zone_json(z zones, with_geometry boolean) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', z.id, 'name', z.name, 'kind', z.kind, 'priority', z.priority,
        'area_km2', round((ST_Area(z.geom::geography) / 1e6)::numeric, 3),
        'bbox', jsonb_build_array(round(ST_XMin(z.geom)::numeric, 7), round(ST_YMin(z.geom)::numeric, 7),
                                  round(ST_XMax(z.geom)::numeric, 7), round(ST_YMax(z.geom)::numeric, 7)),
        'updated_at', rh_ts(z.updated_at), 'updated_by', z.updated_by)
        || CASE WHEN with_geometry THEN jsonb_build_object('geometry', ST_AsGeoJSON(z.geom, 7)::jsonb) ELSE '{}' END
$$;

CREATE OR REPLACE FUNCTION tariff_json(t tariffs) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'vehicle_type', t.vehicle_type, 'version', t.version, 'currency', t.currency,
        'base', t.base, 'per_km', t.per_km, 'per_min', t.per_min, 'minimum', t.minimum,
        'booking_fee', t.booking_fee, 'cancel_fee', t.cancel_fee, 'no_show_fee', t.no_show_fee,
        'waiting_free_s', t.waiting_free_s, 'waiting_per_min', t.waiting_per_min,
        'bands', t.bands, 'zone_rules', t.zone_rules, 'source', t.source,
        'created_by', t.created_by, 'created_at', rh_ts(t.created_at))
$$;

-- Everything the daemon prices with: the zones (with their geometry and
-- override), each vehicle type's current tariff and the versions replaced
-- in the last two hours (quotes of them are still honoured: quote_ttl is at
-- most one hour), and the version of it all.
CREATE OR REPLACE FUNCTION pricing_book_json() RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'version', (SELECT version FROM pricing_book),
        'zones', COALESCE((SELECT jsonb_agg(zone_json(z, true) || jsonb_build_object('override',
                               (SELECT jsonb_strip_nulls(jsonb_build_object('mode', o.mode, 'cap', o.cap))
                                  FROM surge_overrides o WHERE o.zone_id = z.id)) ORDER BY z.id)
                             FROM zones z), '[]'),
        'tariffs', COALESCE((SELECT jsonb_agg(tariff_json(t) ORDER BY t.vehicle_type, t.version)
                               FROM tariffs t
                              WHERE t.version = (SELECT max(x.version) FROM tariffs x WHERE x.vehicle_type = t.vehicle_type)
                                 OR EXISTS (SELECT 1 FROM tariffs n WHERE n.vehicle_type = t.vehicle_type
                                               AND n.version = t.version + 1
                                               AND n.created_at > now() - interval '2 hours')), '[]'))
$$;

-- ------------------------------------------------------------ zones

-- Creates or replaces a zone from a GeoJSON Polygon or MultiPolygon (the
-- daemon has checked its shape: numbers in range, closed rings). Returns
-- (status, body): 201/200 and the zone with the book's version; 422
-- {reason: geometry_invalid, detail} when PostGIS finds it invalid
-- (self-intersecting...), {reason: zone_overlap, zone} when it overlaps a
-- zone of the same kind zone and priority; 409 {reason: zone_in_use} when a
-- zone named in a current tariff's rules would stop being a zone.
CREATE OR REPLACE FUNCTION zone_put(p_name text, p_kind text, p_priority integer, p_geojson text, p_actor text,
                         OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    g geometry;
    why text;
    other text;
    z zones;
    existed boolean;
    v bigint;
BEGIN
    BEGIN
        g := ST_SetSRID(ST_GeomFromGeoJSON(p_geojson), 4326);
    EXCEPTION WHEN OTHERS THEN
        status := 422;
        body := jsonb_build_object('reason', 'geometry_invalid', 'detail', 'not a GeoJSON Polygon or MultiPolygon');
        RETURN;
    END;
    IF NOT ST_IsValid(g) THEN
        why := ST_IsValidReason(g);
        status := 422;
        body := jsonb_build_object('reason', 'geometry_invalid', 'detail', why);
        RETURN;
    END IF;
    g := ST_Multi(g);
    IF ST_IsEmpty(g) OR ST_Area(g) = 0 THEN
        status := 422;
        body := jsonb_build_object('reason', 'geometry_invalid', 'detail', 'the polygon has no area');
        RETURN;
    END IF;
    IF p_kind = 'zone' THEN
        SELECT x.name INTO other FROM zones x
         WHERE x.kind = 'zone' AND x.priority = p_priority AND x.name <> p_name
           AND ST_Intersects(x.geom, g) AND ST_Area(ST_Intersection(x.geom, g)) > 0
         ORDER BY x.name LIMIT 1;
        IF FOUND THEN
            status := 422;
            body := jsonb_build_object('reason', 'zone_overlap', 'zone', other);
            RETURN;
        END IF;
    ELSIF EXISTS (SELECT 1 FROM zones x WHERE x.name = p_name AND x.kind = 'zone')
          AND zone_named_by_tariffs(p_name) THEN
        status := 409;
        body := jsonb_build_object('reason', 'zone_in_use', 'zone', p_name);
        RETURN;
    END IF;
    SELECT EXISTS (SELECT 1 FROM zones x WHERE x.name = p_name) INTO existed;
    INSERT INTO zones (name, kind, priority, geom, updated_by)
    VALUES (p_name, p_kind, p_priority, g, p_actor)
    ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, priority = EXCLUDED.priority, geom = EXCLUDED.geom,
                                     updated_at = now(), updated_by = EXCLUDED.updated_by
    RETURNING * INTO z;
    v := pricing_bump(p_actor, 'zone.put', p_name,
                      jsonb_build_object('kind', p_kind, 'priority', p_priority, 'created', NOT existed,
                                         'area_km2', round((ST_Area(g::geography) / 1e6)::numeric, 3)));
    status := CASE WHEN existed THEN 200 ELSE 201 END;
    body := zone_json(z, true) || jsonb_build_object('book_version', v);
END
$$;

-- Whether a current tariff's zone rules name the zone.
CREATE OR REPLACE FUNCTION zone_named_by_tariffs(p_name text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM tariffs t, jsonb_array_elements(t.zone_rules) r
         WHERE t.version = (SELECT max(x.version) FROM tariffs x WHERE x.vehicle_type = t.vehicle_type)
           AND p_name IN (r->>'zone', r->>'from', r->>'to'))
$$;

-- 200 {name, book_version}; 404; 409 {reason: zone_in_use} while a current
-- tariff names it (its surge override goes with it).
CREATE OR REPLACE FUNCTION zone_delete(p_name text, p_actor text, OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v bigint;
BEGIN
    IF zone_named_by_tariffs(p_name) THEN
        status := 409;
        body := jsonb_build_object('reason', 'zone_in_use', 'zone', p_name);
        RETURN;
    END IF;
    DELETE FROM zones WHERE name = p_name;
    IF NOT FOUND THEN
        status := 404;
        body := jsonb_build_object('reason', 'not_found');
        RETURN;
    END IF;
    v := pricing_bump(p_actor, 'zone.delete', p_name, '{}');
    status := 200;
    body := jsonb_build_object('name', p_name, 'deleted', true, 'book_version', v);
END
$$;

-- ------------------------------------------------------------ tariffs

-- A new version of a vehicle type's tariff (p_tariff: the members of
-- tariff_json() but version, source and created_*; the daemon has checked
-- their types and ranges). Returns 201 and the tariff with the book's
-- version; 422 {reason: zone_unknown, field, zone} when a zone rule names
-- no zone of kind zone.
CREATE OR REPLACE FUNCTION tariff_put(p_vehicle text, p_tariff jsonb, p_source text, p_actor text,
                           OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r jsonb;
    i integer := 0;
    k text;
    t tariffs;
    v bigint;
BEGIN
    FOR r IN SELECT value FROM jsonb_array_elements(COALESCE(p_tariff->'zone_rules', '[]')) LOOP
        FOREACH k IN ARRAY CASE WHEN r->>'kind' = 'fixed' THEN ARRAY['from', 'to'] ELSE ARRAY['zone'] END LOOP
            IF NOT EXISTS (SELECT 1 FROM zones z WHERE z.name = r->>k AND z.kind = 'zone') THEN
                status := 422;
                body := jsonb_build_object('reason', 'zone_unknown', 'field', format('zone_rules[%s].%s', i, k),
                                           'zone', r->>k);
                RETURN;
            END IF;
        END LOOP;
        i := i + 1;
    END LOOP;
    INSERT INTO tariffs (vehicle_type, version, currency, base, per_km, per_min, minimum, booking_fee, cancel_fee,
                         no_show_fee, waiting_free_s, waiting_per_min, bands, zone_rules, source, created_by)
    SELECT p_vehicle, COALESCE((SELECT max(x.version) FROM tariffs x WHERE x.vehicle_type = p_vehicle), 0) + 1,
           p_tariff->>'currency', (p_tariff->>'base')::bigint, (p_tariff->>'per_km')::bigint,
           (p_tariff->>'per_min')::bigint, (p_tariff->>'minimum')::bigint, (p_tariff->>'booking_fee')::bigint,
           (p_tariff->>'cancel_fee')::bigint, (p_tariff->>'no_show_fee')::bigint,
           (p_tariff->>'waiting_free_s')::integer, (p_tariff->>'waiting_per_min')::bigint,
           COALESCE(p_tariff->'bands', '[]'), COALESCE(p_tariff->'zone_rules', '[]'), p_source, p_actor
    RETURNING * INTO t;
    v := pricing_bump(p_actor, 'tariff.put', p_vehicle, jsonb_build_object('version', t.version, 'source', p_source));
    status := 201;
    body := tariff_json(t) || jsonb_build_object('book_version', v);
END
$$;

-- At start: each configured vehicle type ([tariff.<type>]) gets a first
-- version from the configuration when it has none, and a new one when the
-- configuration changed since the version it last wrote, unless an
-- operator wrote a version since (then the database's stands). p_tariffs:
-- {"<type>": {tariff_put()'s members}}. Returns the types written.
CREATE OR REPLACE FUNCTION tariff_seed(p_tariffs jsonb) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    vt text;
    want jsonb;
    cur tariffs;
    have jsonb;
    out text[] := '{}';
    st integer;
    bd jsonb;
BEGIN
    PERFORM pg_advisory_xact_lock(7243013); -- daemons starting together seed once
    FOR vt, want IN SELECT key, value FROM jsonb_each(p_tariffs) LOOP
        SELECT * INTO cur FROM tariffs WHERE vehicle_type = vt ORDER BY version DESC LIMIT 1;
        IF FOUND THEN
            CONTINUE WHEN cur.source <> 'config';
            have := tariff_json(cur) - 'vehicle_type' - 'version' - 'source' - 'created_by' - 'created_at';
            CONTINUE WHEN have = want || jsonb_build_object('bands', '[]'::jsonb, 'zone_rules', '[]'::jsonb);
        END IF;
        SELECT x.status, x.body INTO st, bd FROM tariff_put(vt, want, 'config', 'config') x;
        out := out || vt;
    END LOOP;
    RETURN out;
END
$$;

-- ------------------------------------------------------------ surge overrides

-- 200 {zone, mode, cap, book_version}; 404 when no such zone.
CREATE OR REPLACE FUNCTION surge_override_put(p_zone text, p_mode text, p_cap numeric, p_reason text, p_actor text,
                                   OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    zid integer;
    v bigint;
BEGIN
    SELECT id INTO zid FROM zones WHERE name = p_zone;
    IF NOT FOUND THEN
        status := 404;
        body := jsonb_build_object('reason', 'not_found', 'field', 'zone');
        RETURN;
    END IF;
    INSERT INTO surge_overrides (zone_id, mode, cap, reason, set_by)
    VALUES (zid, p_mode, CASE WHEN p_mode = 'cap' THEN p_cap END, p_reason, p_actor)
    ON CONFLICT (zone_id) DO UPDATE SET mode = EXCLUDED.mode, cap = EXCLUDED.cap, reason = EXCLUDED.reason,
                                        set_by = EXCLUDED.set_by, set_at = now();
    v := pricing_bump(p_actor, 'surge.override.put', p_zone,
                      jsonb_strip_nulls(jsonb_build_object('mode', p_mode, 'cap', CASE WHEN p_mode = 'cap' THEN p_cap END,
                                                           'reason', p_reason)));
    status := 200;
    body := jsonb_strip_nulls(jsonb_build_object('zone', p_zone, 'mode', p_mode,
                                                 'cap', CASE WHEN p_mode = 'cap' THEN p_cap END, 'reason', p_reason,
                                                 'set_by', p_actor, 'book_version', v));
END
$$;

CREATE OR REPLACE FUNCTION surge_override_delete(p_zone text, p_actor text, OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v bigint;
BEGIN
    DELETE FROM surge_overrides o USING zones z WHERE o.zone_id = z.id AND z.name = p_zone;
    IF NOT FOUND THEN
        status := 404;
        body := jsonb_build_object('reason', 'not_found');
        RETURN;
    END IF;
    v := pricing_bump(p_actor, 'surge.override.delete', p_zone, '{}');
    status := 200;
    body := jsonb_build_object('zone', p_zone, 'deleted', true, 'book_version', v);
END
$$;
