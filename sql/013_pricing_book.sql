-- 013: the pricing book: the service area and named zones (PostGIS
-- polygons), versioned tariffs per vehicle type (time-of-day bands, zone
-- rules), the operator's surge overrides per zone, and the log of every
-- change with who made it.
--
-- The daemon holds the book in memory (src/pricing/book.c) and reads it
-- again whenever pricing_book.version moves: every change below bumps it
-- in the same transaction and NOTIFYs ridehail_pricing, so a change takes
-- effect without a restart in every daemon on the database. Rows of
-- tariffs are never updated: a change is a new version, and every trip
-- records the version it was priced with (trips.tariff_version, from the
-- estimate it stores), so a receipt can always be explained.
--
-- (Numbered 013: 012 is taken by the function files of the SQL layout.)

CREATE TABLE pricing_book (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint NOT NULL CHECK (version >= 1)
);
INSERT INTO pricing_book VALUES (true, 1);

CREATE TABLE pricing_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL CHECK (length(actor) BETWEEN 1 AND 64),
    action       text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    subject      text NOT NULL CHECK (length(subject) <= 64),
    detail       jsonb NOT NULL DEFAULT '{}',
    book_version bigint NOT NULL
);

-- The service area (kind service_area: a pickup outside every one of them
-- is refused; none at all: everywhere is served) and named zones (kind
-- zone: the zone of a point is the one of highest priority holding it; two
-- zones of one priority may not overlap).
CREATE TABLE zones (
    id         serial PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    kind       text NOT NULL CHECK (kind IN ('service_area', 'zone')),
    priority   integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
    geom       geometry(MultiPolygon, 4326) NOT NULL CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);
CREATE INDEX zones_geom ON zones USING gist (geom);

-- One row per (vehicle type, version); the highest version is current.
-- bands: [{name, start "HH:MM", end "HH:MM", base?, per_km?, per_min?,
-- minimum?}] in pricing.timezone, the first holding the time applies;
-- zone_rules: [{kind: pickup_fee|dropoff_fee, zone, amount} |
-- {kind: fixed, from, to, amount, both_ways}] naming zones of kind zone.
CREATE TABLE tariffs (
    vehicle_type    rh_trip_vehicle NOT NULL,
    version         integer NOT NULL CHECK (version >= 1),
    currency        rh_currency NOT NULL,
    base            rh_amount NOT NULL,
    per_km          rh_amount NOT NULL,
    per_min         rh_amount NOT NULL,
    minimum         rh_amount NOT NULL,
    booking_fee     rh_amount NOT NULL,
    cancel_fee      rh_amount NOT NULL,
    no_show_fee     rh_amount NOT NULL,
    waiting_free_s  rh_count NOT NULL,
    waiting_per_min rh_amount NOT NULL,
    bands           jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(bands) = 'array'),
    zone_rules      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(zone_rules) = 'array'),
    source          text NOT NULL CHECK (source IN ('config', 'operator')),
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vehicle_type, version)
);

CREATE TABLE surge_overrides (
    zone_id integer PRIMARY KEY REFERENCES zones (id) ON DELETE CASCADE,
    mode    text NOT NULL CHECK (mode IN ('cap', 'freeze', 'disable')),
    cap     numeric(4, 2) CHECK (cap BETWEEN 1 AND 10),
    reason  text CHECK (length(reason) <= 200),
    set_by  text NOT NULL,
    set_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((mode = 'cap') = (cap IS NOT NULL))
);

-- The tariff version a trip was priced with (its estimate carries it; a
-- trip of a quote given before this migration has none).
ALTER TABLE trips ADD COLUMN tariff_version integer
    GENERATED ALWAYS AS ((estimate->>'tariff_version')::integer) STORED;

-- ------------------------------------------------------------ the book

-- A change: the book's version moves, the log says who did what, and every
-- daemon listening hears of it (after the commit).
CREATE FUNCTION pricing_bump(p_actor text, p_action text, p_subject text, p_detail jsonb) RETURNS bigint
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

CREATE FUNCTION zone_json(z zones, with_geometry boolean) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', z.id, 'name', z.name, 'kind', z.kind, 'priority', z.priority,
        'area_km2', round((ST_Area(z.geom::geography) / 1e6)::numeric, 3),
        'bbox', jsonb_build_array(round(ST_XMin(z.geom)::numeric, 7), round(ST_YMin(z.geom)::numeric, 7),
                                  round(ST_XMax(z.geom)::numeric, 7), round(ST_YMax(z.geom)::numeric, 7)),
        'updated_at', rh_ts(z.updated_at), 'updated_by', z.updated_by)
        || CASE WHEN with_geometry THEN jsonb_build_object('geometry', ST_AsGeoJSON(z.geom, 7)::jsonb) ELSE '{}' END
$$;

CREATE FUNCTION tariff_json(t tariffs) RETURNS jsonb LANGUAGE sql STABLE AS $$
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
CREATE FUNCTION pricing_book_json() RETURNS jsonb LANGUAGE sql STABLE AS $$
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
CREATE FUNCTION zone_put(p_name text, p_kind text, p_priority integer, p_geojson text, p_actor text,
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
CREATE FUNCTION zone_named_by_tariffs(p_name text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM tariffs t, jsonb_array_elements(t.zone_rules) r
         WHERE t.version = (SELECT max(x.version) FROM tariffs x WHERE x.vehicle_type = t.vehicle_type)
           AND p_name IN (r->>'zone', r->>'from', r->>'to'))
$$;

-- 200 {name, book_version}; 404; 409 {reason: zone_in_use} while a current
-- tariff names it (its surge override goes with it).
CREATE FUNCTION zone_delete(p_name text, p_actor text, OUT status integer, OUT body jsonb)
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
CREATE FUNCTION tariff_put(p_vehicle text, p_tariff jsonb, p_source text, p_actor text,
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
CREATE FUNCTION tariff_seed(p_tariffs jsonb) RETURNS text[] LANGUAGE plpgsql AS $$
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
CREATE FUNCTION surge_override_put(p_zone text, p_mode text, p_cap numeric, p_reason text, p_actor text,
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

CREATE FUNCTION surge_override_delete(p_zone text, p_actor text, OUT status integer, OUT body jsonb)
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

-- ------------------------------------------------------------ fares

-- The metered fare now counts the estimate's zone fees (airport pickup or
-- dropoff, not surged) and a fixed fare between zones (which replaces
-- base, distance, time, surge and the minimum): the same arithmetic as
-- pricing_fare() in src/pricing/book.c.
CREATE OR REPLACE FUNCTION trip_metered_fare(est jsonb, dist_m integer, dur_s integer) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN (est->>'fixed_fare')::bigint > 0 THEN (est->>'fixed_fare')::bigint
                ELSE GREATEST((((est->>'base')::bigint + trip_fare_distance(est, dist_m) + trip_fare_time(est, dur_s))
                               * round((est->>'surge_multiplier')::numeric * 1000)::bigint + 500) / 1000,
                              (est->>'minimum')::bigint) END
           + (est->>'booking_fee')::bigint + COALESCE((est->>'zone_fee')::bigint, 0)
$$;

-- The waiting fee: per started minute the driver waited at the pickup
-- (arrived -> started) past the tariff's free time, as the trip's policy
-- recorded it when it was requested (none in a policy without it).
CREATE FUNCTION trip_waiting_fee(pol jsonb, arrived timestamptz, started timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN arrived IS NULL OR started IS NULL OR NOT pol ? 'waiting_per_min' THEN 0::bigint
                ELSE GREATEST(0, ceil((extract(epoch FROM started - arrived) - (pol->>'waiting_free_s')::numeric) / 60))::bigint
                     * (pol->>'waiting_per_min')::bigint END
$$;

-- trip_apply() of sql/009, changed in two lines only (marked 013): a
-- completed trip's metered and final fares add the waiting fee.
CREATE OR REPLACE FUNCTION trip_apply(p_items jsonb, p_lock boolean)
RETURNS TABLE (i integer, status integer, body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    now_ts timestamptz := now();
    tids uuid[];
    dids uuid[];
    ts trips[];           -- the batch's trips, by id, as the steps leave them
    tv0 integer[];        -- their version and event_seq as read
    te0 integer[];
    tdirty boolean[];
    tmap jsonb;           -- trip id -> index in ts
    ds drivers[];         -- the drivers named or assigned, by id
    dv0 bigint[];
    ddirty boolean[];
    dmap jsonb;
    n_t integer := 0;     -- changed trips, drivers
    n_d integer := 0;
    cnt integer;
    -- answers
    a_st integer[] := '{}';
    a_bd jsonb[] := '{}';
    -- history rows
    e_trip uuid[] := '{}';
    e_seq integer[] := '{}';
    e_from text[] := '{}';
    e_to text[] := '{}';
    e_role text[] := '{}';
    e_actor text[] := '{}';
    e_detail jsonb[] := '{}';
    -- outbox rows, in order
    o_trip uuid[] := '{}';
    o_seq integer[] := '{}';
    o_type text[] := '{}';
    o_pl jsonb[] := '{}';
    -- one item
    it jsonb;
    p_to text;
    p_role text;
    p_actor text;
    p_args jsonb;
    tp integer;
    dp integer;
    t trips;
    d drivers;
    st integer;
    bd jsonb;
    pol jsonb;
    fee bigint;
    reason text;
    dver bigint;
    dist integer;
    dur integer;
    metered bigint;
    final bigint;
    review boolean;
    tol numeric;
    est_d numeric;
    est_t numeric;
    end_g geography;
    from_state text;
    evt jsonb;
    ev1 text;
    pl1 jsonb;
    ev2 text;
    pl2 jsonb;
BEGIN
    -- 1. the rows
    -- (= ANY of an array: an index scan whatever the planner thinks of the
    -- table's size when the plan is cached)
    SELECT array_agg((value->>'trip_id')::uuid), array_agg((value->'args'->>'driver_id')::uuid)
      INTO tids, dids FROM jsonb_array_elements(p_items);
    IF p_lock THEN
        SELECT array_agg(l.t ORDER BY (l.t).id) INTO ts
          FROM (SELECT t FROM trips t WHERE t.id = ANY (tids) ORDER BY t.id FOR UPDATE) l;
    ELSE
        SELECT array_agg(t ORDER BY t.id) INTO ts FROM trips t WHERE t.id = ANY (tids);
    END IF;
    SELECT jsonb_object_agg(u.id, u.ordinality), array_agg(u.version ORDER BY u.ordinality),
           array_agg(u.event_seq ORDER BY u.ordinality), array_agg(false)
      INTO tmap, tv0, te0, tdirty
      FROM unnest(ts) WITH ORDINALITY AS u;
    -- the drivers the items name (args.driver_id: MATCHED) and the trips' drivers
    dids := dids || (SELECT array_agg(x.driver_id) FROM unnest(ts) x);
    IF p_lock THEN
        SELECT array_agg(l.d ORDER BY (l.d).id) INTO ds
          FROM (SELECT d FROM drivers d WHERE d.id = ANY (dids) ORDER BY d.id FOR UPDATE) l;
    ELSE
        SELECT array_agg(d ORDER BY d.id) INTO ds FROM drivers d WHERE d.id = ANY (dids);
    END IF;
    SELECT jsonb_object_agg(u.id, u.ordinality), array_agg(u.version ORDER BY u.ordinality), array_agg(false)
      INTO dmap, dv0, ddirty
      FROM unnest(ds) WITH ORDINALITY AS u;
    tmap := COALESCE(tmap, '{}');
    dmap := COALESCE(dmap, '{}');

    -- 2. the steps
    FOR it IN SELECT value FROM jsonb_array_elements(p_items) LOOP
        p_to := it->>'to';
        p_role := it->>'role';
        p_actor := it->>'actor';
        p_args := COALESCE(it->'args', '{}');
        tp := (tmap->>((it->>'trip_id')::uuid::text))::integer;
        dver := NULL;
        <<step>>
        BEGIN
            IF tp IS NOT NULL THEN
                t := ts[tp];
            END IF;
            IF tp IS NULL OR (p_role = 'rider' AND t.rider_id::text <> p_actor)
               OR (p_role = 'driver' AND p_to <> 'MATCHED' AND (t.driver_id IS NULL OR t.driver_id::text <> p_actor))
               OR (p_role = 'driver' AND p_to = 'MATCHED' AND (p_args->>'driver_id') IS DISTINCT FROM p_actor) THEN
                st := 404;
                bd := jsonb_build_object('reason', 'not_found');
                EXIT step;
            END IF;
            from_state := t.state;
            pol := t.policy;

            -- The same transition again: answer as the first time, change nothing.
            IF t.state = p_to THEN
                IF p_to = 'MATCHED' AND t.driver_id IS DISTINCT FROM (p_args->>'driver_id')::uuid THEN
                    st := 409;
                    bd := jsonb_build_object('reason', 'already_matched', 'state', t.state);
                    EXIT step;
                END IF;
                st := 200;
                bd := jsonb_build_object('repeated', true);
                EXIT step;
            END IF;
            IF p_args ? 'only_from' AND t.state <> p_args->>'only_from' THEN
                st := 409;
                bd := jsonb_build_object('reason', 'state_changed', 'state', t.state);
                EXIT step;
            END IF;
            IF p_args ? 'expected_version' AND (p_args->>'expected_version')::integer <> t.version THEN
                st := 409;
                bd := jsonb_build_object('reason', 'version_conflict', 'state', t.state, 'version', t.version);
                EXIT step;
            END IF;
            IF NOT ((t.state = 'SEARCHING' AND p_to = 'MATCHED')
                 OR (t.state = 'MATCHED' AND p_to = 'ARRIVED')
                 OR (t.state = 'ARRIVED' AND p_to = 'IN_PROGRESS')
                 OR (t.state = 'IN_PROGRESS' AND p_to = 'COMPLETED')
                 OR (t.state IN ('SEARCHING', 'MATCHED', 'ARRIVED') AND p_to = 'CANCELLED' AND p_role <> 'driver')
                 OR (t.state IN ('MATCHED', 'ARRIVED') AND p_to = 'CANCELLED' AND p_role = 'driver')
                 OR (t.state = 'IN_PROGRESS' AND p_to = 'CANCELLED' AND p_role IN ('operator', 'system'))) THEN
                st := 409;
                bd := jsonb_build_object('reason',
                            CASE WHEN t.state = 'MATCHED' AND p_to = 'MATCHED' THEN 'already_matched'
                                 WHEN t.state = 'IN_PROGRESS' AND p_to = 'CANCELLED' THEN 'trip_in_progress'
                                 WHEN t.state IN ('COMPLETED', 'CANCELLED') THEN 'trip_finished'
                                 ELSE 'illegal_transition' END,
                            'state', t.state, 'to', p_to);
                EXIT step;
            END IF;

            -- the driver: the one named (MATCHED) or the trip's
            dp := (dmap->>(CASE WHEN p_to = 'MATCHED' THEN (p_args->>'driver_id')::uuid ELSE t.driver_id END)::text)::integer;
            IF dp IS NOT NULL THEN
                d := ds[dp];
            ELSE
                d := NULL;
            END IF;
            evt := '{}';
            ev2 := NULL;
            pl2 := NULL;
            IF p_to = 'MATCHED' THEN
                -- The driver must be available (or offered this trip) on
                -- (status, version), for this vehicle type.
                IF dp IS NULL OR d.status NOT IN ('available', 'offered') OR d.disabled
                   OR d.vehicle_type <> t.vehicle_type
                   OR (p_args ? 'driver_version' AND d.version <> (p_args->>'driver_version')::bigint) THEN
                    st := 409;
                    bd := jsonb_build_object('reason', 'driver_unavailable', 'state', t.state);
                    EXIT step;
                END IF;
                d.status := 'en_route';
                t.state := 'MATCHED';
                t.driver_id := d.id;
                t.matched_at := now_ts;
                t.event_seq := t.event_seq + 1;
                ev1 := 'trip.accepted';
                pl1 := jsonb_build_object(
                    'trip_id', t.id, 'driver_id', t.driver_id, 'accepted_at', rh_ts(now_ts))
                    || jsonb_strip_nulls(jsonb_build_object('eta_seconds', (p_args->>'eta_s')::integer,
                                                            'distance_m', (p_args->>'distance_m')::integer,
                                                            'match_score', (p_args->>'score')::numeric))
                    || jsonb_build_object('assigned_by', p_role);
            ELSIF p_to = 'ARRIVED' THEN
                t.state := 'ARRIVED';
                t.arrived_at := now_ts;
                t.event_seq := t.event_seq + 1;
                ev1 := 'trip.driver_arrived';
                pl1 := jsonb_build_object('trip_id', t.id, 'driver_id', t.driver_id, 'arrived_at', rh_ts(now_ts));
            ELSIF p_to = 'IN_PROGRESS' THEN
                IF dp IS NOT NULL AND d.status = 'en_route' THEN
                    d.status := 'on_trip';
                END IF;
                t.state := 'IN_PROGRESS';
                t.started_at := now_ts;
                t.event_seq := t.event_seq + 1;
                ev1 := 'trip.started';
                pl1 := jsonb_build_object('trip_id', t.id, 'started_at', rh_ts(now_ts),
                                          'start_location', rh_latlon(t.pickup));
            ELSIF p_to = 'COMPLETED' THEN
                dist := (p_args->>'distance_m')::integer;
                dur := (p_args->>'duration_s')::integer;
                IF p_args ? 'end_lat' THEN
                    end_g := ST_SetSRID(ST_MakePoint((p_args->>'end_lng')::float8, (p_args->>'end_lat')::float8), 4326)::geography;
                ELSE
                    end_g := t.dropoff;
                END IF;
                metered := trip_metered_fare(t.estimate, dist, dur);
                -- The upfront price is honoured unless the trip deviated from
                -- the estimate beyond the tolerance (either way): then the
                -- metered fare is charged and the trip flagged for review.
                tol := (pol->>'fare_tolerance')::numeric;
                est_d := GREATEST((t.estimate->>'distance_m')::numeric, 1);
                est_t := GREATEST((t.estimate->>'duration_s')::numeric, 1);
                review := abs(dist - est_d) > tol * est_d OR abs(dur - est_t) > tol * est_t;
                final := CASE WHEN review THEN metered ELSE t.fare_quoted END;
                -- (013) the waiting fee on top, either way
                metered := metered + trip_waiting_fee(pol, t.arrived_at, t.started_at);
                final := final + trip_waiting_fee(pol, t.arrived_at, t.started_at);
                IF dp IS NOT NULL AND d.status IN ('en_route', 'on_trip') THEN
                    d.status := 'available';
                END IF;
                t.state := 'COMPLETED';
                t.completed_at := now_ts;
                t.metered_distance_m := dist;
                t.metered_duration_s := dur;
                t.fare_metered := metered;
                t.fare_final := final;
                t.needs_review := review;
                t.end_location := end_g;
                t.event_seq := t.event_seq + 2;
                evt := jsonb_build_object('fare_final', final, 'needs_review', review);
                ev1 := 'trip.finished';
                pl1 := jsonb_build_object(
                    'trip_id', t.id, 'finished_at', rh_ts(now_ts), 'end_location', rh_latlon(end_g),
                    'distance_km', round(dist / 1000.0, 3), 'duration_sec', dur,
                    'fare', rh_money(final, t.currency));
                ev2 := 'price.calculated';
                pl2 := jsonb_build_object(
                    'trip_id', t.id, 'kind', 'final',
                    'base_fare', round((t.estimate->>'base')::numeric / 100, 2),
                    'distance_fare', round(trip_fare_distance(t.estimate, dist) / 100.0, 2),
                    'time_fare', round(trip_fare_time(t.estimate, dur) / 100.0, 2),
                    'booking_fee', round((t.estimate->>'booking_fee')::numeric / 100, 2),
                    'surge_multiplier', (t.estimate->>'surge_multiplier')::numeric,
                    'total_fare', round(final / 100.0, 2), 'currency', t.currency,
                    'upfront_fare', round(t.fare_quoted / 100.0, 2), 'needs_review', review);
            ELSE -- CANCELLED
                fee := 0;
                reason := COALESCE(p_args->>'reason', CASE p_role WHEN 'rider' THEN 'rider_cancelled'
                                                                  WHEN 'driver' THEN 'driver_cancelled'
                                                                  ELSE 'operator_cancelled' END);
                IF p_role = 'rider' AND t.state IN ('MATCHED', 'ARRIVED')
                   AND now_ts > t.matched_at + make_interval(secs => (pol->>'cancel_grace_s')::float8) THEN
                    fee := (pol->>'cancel_fee')::bigint;
                ELSIF p_role = 'driver' AND t.state = 'ARRIVED'
                   AND now_ts >= t.arrived_at + make_interval(secs => (pol->>'no_show_wait_s')::float8) THEN
                    fee := (pol->>'no_show_fee')::bigint;
                    reason := 'rider_no_show';
                END IF;
                IF dp IS NOT NULL AND d.status IN ('en_route', 'on_trip') THEN
                    d.status := 'available';
                END IF;
                t.state := 'CANCELLED';
                t.cancelled_at := now_ts;
                t.cancelled_by := p_role;
                t.cancel_reason := reason;
                t.cancel_fee := fee;
                t.event_seq := t.event_seq + 1;
                evt := jsonb_build_object('reason', reason, 'fee', fee);
                ev1 := 'trip.cancelled';
                pl1 := jsonb_build_object(
                    'trip_id', t.id, 'cancelled_at', rh_ts(now_ts), 'cancelled_by', p_role, 'reason', reason,
                    'state_before', from_state, 'fee', rh_money(fee, t.currency))
                    || jsonb_strip_nulls(jsonb_build_object('driver_id', t.driver_id));
            END IF;
            t.version := t.version + 1;
            ts[tp] := t;
            IF NOT tdirty[tp] THEN
                tdirty[tp] := true;
                n_t := n_t + 1;
            END IF;
            -- a driver whose status moved gets a new version
            IF dp IS NOT NULL AND d.status IS DISTINCT FROM (ds[dp]).status THEN
                d.version := d.version + 1;
                d.updated_at := now_ts;
                dver := d.version;
                ds[dp] := d;
                IF NOT ddirty[dp] THEN
                    ddirty[dp] := true;
                    n_d := n_d + 1;
                END IF;
            END IF;
            e_trip := e_trip || t.id;
            e_seq := e_seq || t.version;
            e_from := e_from || from_state;
            e_to := e_to || t.state;
            e_role := e_role || p_role;
            e_actor := e_actor || p_actor;
            e_detail := e_detail || jsonb_strip_nulls(jsonb_build_object('driver_version', dver) || evt);
            -- ev2: a second event, the last sequence number; ev1 then takes
            -- the one before
            o_trip := o_trip || t.id;
            o_type := o_type || ev1;
            o_pl := o_pl || pl1;
            o_seq := o_seq || (t.event_seq - CASE WHEN ev2 IS NULL THEN 0 ELSE 1 END);
            IF ev2 IS NOT NULL THEN
                o_trip := o_trip || t.id;
                o_type := o_type || ev2;
                o_pl := o_pl || pl2;
                o_seq := o_seq || t.event_seq;
            END IF;
            st := 200;
            bd := jsonb_strip_nulls(jsonb_build_object('driver_version', dver));
        END;
        -- a 200 answer holds the trip as this step left it (a repeat: as it is)
        IF st = 200 THEN
            dp := (dmap->>(t.driver_id::text))::integer;
            IF dp IS NOT NULL THEN
                d := ds[dp];
            ELSE
                d := NULL;
            END IF;
            bd := trip_view(t, d) || bd;
        END IF;
        a_st := a_st || st;
        a_bd := a_bd || bd;
    END LOOP;

    -- 3. the writes
    IF n_t > 0 THEN
        UPDATE trips x
           SET state = u.state, driver_id = u.driver_id, version = u.version, event_seq = u.event_seq,
               fare_final = u.fare_final, fare_metered = u.fare_metered,
               metered_distance_m = u.metered_distance_m, metered_duration_s = u.metered_duration_s,
               needs_review = u.needs_review, cancelled_by = u.cancelled_by, cancel_reason = u.cancel_reason,
               cancel_fee = u.cancel_fee, end_location = u.end_location, matched_at = u.matched_at,
               arrived_at = u.arrived_at, started_at = u.started_at, completed_at = u.completed_at,
               cancelled_at = u.cancelled_at
          FROM unnest(ts) WITH ORDINALITY AS u
         WHERE tdirty[u.ordinality] AND x.id = u.id
           AND x.version = tv0[u.ordinality] AND x.event_seq = te0[u.ordinality];
        GET DIAGNOSTICS cnt = ROW_COUNT;
        IF cnt <> n_t THEN
            RAISE EXCEPTION 'trip_apply: % of % trips changed since they were read', n_t - cnt, n_t
                USING ERRCODE = 'serialization_failure';
        END IF;
        INSERT INTO trip_events (trip_id, seq, from_state, to_state, actor_role, actor_id, at, detail)
        SELECT u.tr, u.sq, u.fr, u.tt, u.ro, u.ac, now_ts, u.de
          FROM unnest(e_trip, e_seq, e_from, e_to, e_role, e_actor, e_detail) AS u (tr, sq, fr, tt, ro, ac, de);
        INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
        SELECT u.ty, 'ridehaild', u.tr, u.tr, u.sq, u.pl
          FROM unnest(o_type, o_trip, o_seq, o_pl) WITH ORDINALITY AS u (ty, tr, sq, pl, n)
         ORDER BY u.n;
    END IF;
    IF n_d > 0 THEN
        UPDATE drivers x
           SET status = u.status, version = u.version, updated_at = u.updated_at
          FROM unnest(ds) WITH ORDINALITY AS u
         WHERE ddirty[u.ordinality] AND x.id = u.id AND x.version = dv0[u.ordinality];
        GET DIAGNOSTICS cnt = ROW_COUNT;
        IF cnt <> n_d THEN
            RAISE EXCEPTION 'trip_apply: % of % drivers changed since they were read', n_d - cnt, n_d
                USING ERRCODE = 'serialization_failure';
        END IF;
    END IF;
    RETURN QUERY SELECT (u.n - 1)::integer, u.st, u.bd FROM unnest(a_st, a_bd) WITH ORDINALITY AS u (st, bd, n);
END
$$;

-- The receipt lists the zone fees, a fixed fare and the waiting fee as
-- lines of their own, so that the lines still add up to the total.
CREATE OR REPLACE FUNCTION trip_receipt(t trips) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'trip_id', t.id,
        'state', t.state,
        'currency', t.currency,
        'rider_id', t.rider_id,
        'driver', (SELECT jsonb_build_object('id', d.id, 'name', d.name, 'plate', d.plate,
                                             'vehicle', d.vehicle_make || ' ' || d.vehicle_model)
                   FROM drivers d WHERE d.id = t.driver_id),
        'pickup', rh_latlng(t.pickup),
        'dropoff', rh_latlng(COALESCE(t.end_location, t.dropoff)),
        'requested_at', rh_ts(t.requested_at),
        'started_at', rh_ts(t.started_at),
        'completed_at', rh_ts(t.completed_at),
        'cancelled_at', rh_ts(t.cancelled_at),
        'distance_m', t.metered_distance_m,
        'duration_s', t.metered_duration_s,
        'lines', CASE WHEN t.state = 'COMPLETED' THEN
                     (CASE WHEN t.fare_final - w.fee <> t.fare_quoted THEN
                          -- metered: the lines add up to the total (surge and
                          -- the minimum fare as one adjustment line)
                          CASE WHEN (t.estimate->>'fixed_fare')::bigint > 0 THEN
                               jsonb_build_array(jsonb_build_object('item', 'fixed_fare', 'amount',
                                                                    (t.estimate->>'fixed_fare')::bigint))
                          ELSE jsonb_build_array(
                              jsonb_build_object('item', 'base', 'amount', (t.estimate->>'base')::bigint),
                              jsonb_build_object('item', 'distance', 'amount',
                                                 trip_fare_distance(t.estimate, t.metered_distance_m)),
                              jsonb_build_object('item', 'time', 'amount',
                                                 trip_fare_time(t.estimate, t.metered_duration_s)),
                              jsonb_build_object('item', 'surge_and_minimum', 'amount',
                                                 t.fare_final - w.fee - z.fee - (t.estimate->>'booking_fee')::bigint
                                                 - (t.estimate->>'base')::bigint
                                                 - trip_fare_distance(t.estimate, t.metered_distance_m)
                                                 - trip_fare_time(t.estimate, t.metered_duration_s))) END
                          || CASE WHEN z.fee > 0 THEN jsonb_build_array(jsonb_build_object('item', 'zone_fee', 'amount', z.fee))
                                  ELSE '[]' END
                          || jsonb_build_array(jsonb_build_object('item', 'booking_fee', 'amount',
                                                                  (t.estimate->>'booking_fee')::bigint))
                     ELSE jsonb_build_array(jsonb_build_object('item', 'upfront_fare', 'amount', t.fare_quoted)) END)
                     || CASE WHEN w.fee > 0 THEN jsonb_build_array(jsonb_build_object('item', 'waiting', 'amount', w.fee))
                             ELSE '[]' END
                 ELSE jsonb_build_array(jsonb_build_object('item', 'cancellation_fee', 'amount', t.cancel_fee,
                                                           'reason', t.cancel_reason)) END,
        'surge_multiplier', (t.estimate->>'surge_multiplier')::numeric,
        'tariff_version', t.tariff_version,
        'upfront_fare', t.fare_quoted,
        'metered_fare', t.fare_metered,
        'total', CASE WHEN t.state = 'COMPLETED' THEN t.fare_final ELSE t.cancel_fee END,
        'needs_review', t.needs_review))
      FROM (SELECT CASE WHEN t.state = 'COMPLETED' THEN trip_waiting_fee(t.policy, t.arrived_at, t.started_at)
                        ELSE 0 END AS fee) w,
           (SELECT COALESCE((t.estimate->>'zone_fee')::bigint, 0) AS fee) z
$$;
