-- Values as the API and the events show them: one-expression SQL functions,
-- STABLE, so that the planner inlines them into their callers.
--
-- sql/functions/: every function body of the schema, each defined once,
-- as CREATE OR REPLACE. The daemon carries these files (build-aux/embed)
-- and applies them after the migrations, in the order of their names, all
-- in one transaction, whenever its text of any differs from what the
-- database recorded (schema_functions) or a migration ran since. Changing a
-- function here is the whole change; changing its arguments or its result
-- type needs a migration that drops the old one first (CREATE OR REPLACE
-- cannot), and so does removing it. docs/architecture.md ("The SQL").

-- A timestamp as RFC 3339 in UTC, to the millisecond.
CREATE OR REPLACE FUNCTION rh_ts(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- A point as the REST API shows it.
CREATE OR REPLACE FUNCTION rh_latlng(g geography) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN g IS NULL THEN NULL ELSE
        jsonb_build_object('lat', round(ST_Y(g::geometry)::numeric, 7)::float8, 'lng', round(ST_X(g::geometry)::numeric, 7)::float8) END
$$;

-- A point as events show it (the geo_point of the event schemas).
CREATE OR REPLACE FUNCTION rh_latlon(g geography) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('lat', round(ST_Y(g::geometry)::numeric, 7)::float8, 'lon', round(ST_X(g::geometry)::numeric, 7)::float8)
$$;

-- Events carry money as a decimal in major units (currency_amount).
CREATE OR REPLACE FUNCTION rh_money(minor bigint, cur text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('currency', cur, 'amount', round(minor / 100.0, 2))
$$;
