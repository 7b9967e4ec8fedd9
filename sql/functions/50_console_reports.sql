-- The operator's reports (GET /v1/admin/reports/*.csv, docs/console.md):
-- per day and per driver over a range of UTC days [p_from, p_to].
-- Tables: sql/005_trips.sql, sql/004_driver_locations.sql.

-- Per UTC day (of the request) and currency: trips requested, completed and
-- cancelled (as they stand now), and the revenue of the completed ones
-- (fare_final, minor units). Days without trips are listed with zeros, in
-- the default currency p_currency.
CREATE OR REPLACE FUNCTION console_report_daily(p_from date, p_to date, p_currency text)
RETURNS TABLE (day date, currency text, trips bigint, completed bigint, cancelled bigint, revenue bigint)
LANGUAGE sql STABLE AS $$
    WITH t AS (
        SELECT (x.requested_at AT TIME ZONE 'UTC')::date AS day, x.currency::text AS currency,
               count(*) AS trips,
               count(*) FILTER (WHERE x.state = 'COMPLETED') AS completed,
               count(*) FILTER (WHERE x.state = 'CANCELLED') AS cancelled,
               COALESCE(sum(x.fare_final) FILTER (WHERE x.state = 'COMPLETED'), 0)::bigint AS revenue
          FROM trips x
         WHERE x.requested_at >= p_from::timestamp AT TIME ZONE 'UTC'
           AND x.requested_at < (p_to + 1)::timestamp AT TIME ZONE 'UTC'
         GROUP BY 1, 2)
    SELECT d.day::date, COALESCE(t.currency, p_currency), COALESCE(t.trips, 0), COALESCE(t.completed, 0),
           COALESCE(t.cancelled, 0), COALESCE(t.revenue, 0)
      FROM generate_series(p_from, p_to, interval '1 day') AS d (day)
      LEFT JOIN t ON t.day = d.day::date
     ORDER BY 1, 2
$$;

-- Per driver with a completed trip or a location in the range: trips
-- completed, earnings (their fare_final, minor units, per currency), and
-- hours online, counted as the minutes in which the location history has a
-- fix of theirs (presence.history must be on; a driver reports every few
-- seconds while online).
CREATE OR REPLACE FUNCTION console_report_drivers(p_from date, p_to date)
RETURNS TABLE (driver_id uuid, name text, plate text, currency text, completed bigint, earnings bigint,
               hours_online numeric)
LANGUAGE sql STABLE AS $$
    WITH span AS (
        SELECT p_from::timestamp AT TIME ZONE 'UTC' AS a, (p_to + 1)::timestamp AT TIME ZONE 'UTC' AS b),
    done AS (
        SELECT x.driver_id, x.currency::text AS currency, count(*) AS completed, sum(x.fare_final)::bigint AS earnings
          FROM trips x, span
         WHERE x.state = 'COMPLETED' AND x.completed_at >= span.a AND x.completed_at < span.b
         GROUP BY 1, 2),
    online AS (
        SELECT l.driver_id, count(DISTINCT date_trunc('minute', l.recorded_at)) AS minutes
          FROM driver_locations l, span
         WHERE l.recorded_at >= span.a AND l.recorded_at < span.b
         GROUP BY 1)
    SELECT d.id, d.name, d.plate, done.currency, COALESCE(done.completed, 0), COALESCE(done.earnings, 0),
           round(COALESCE(online.minutes, 0) / 60.0, 2)
      FROM drivers d
      LEFT JOIN done ON done.driver_id = d.id
      LEFT JOIN online ON online.driver_id = d.id
     WHERE done.driver_id IS NOT NULL OR online.driver_id IS NOT NULL
     ORDER BY d.name, d.id, done.currency
$$;
