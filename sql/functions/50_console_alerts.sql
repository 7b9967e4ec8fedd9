-- The console's alerts as events (src/console/alerts.c, docs/events.md):
-- each time an alert is raised is a row of console_alerts (sql/021_desk.sql)
-- and the aggregate of two outbox events, alert.raised (seq 1) and
-- alert.cleared (seq 2), written in the same statement as the row. The
-- daemon may write them late (the database alert is written once the
-- database is back), so occurred_at is when it happened, not now(); and it
-- may write one twice (an answer lost on the way back): the second is a
-- no-op. Each returns whether it wrote.

CREATE OR REPLACE FUNCTION console_alert_raised(p_id uuid, p_alert text, p_detail text, p_at timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO console_alerts (id, alert, detail, raised_at) VALUES (p_id, p_alert, left(p_detail, 200), p_at)
        ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO outbox (event_type, occurred_at, producer, correlation_id, aggregate_id, aggregate_seq, payload)
    VALUES ('alert.raised', p_at, 'ridehaild', p_id, p_id, 1,
            jsonb_build_object('alert_id', p_id, 'alert', p_alert, 'detail', left(p_detail, 200),
                               'raised_at', rh_ts(p_at)));
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION console_alert_cleared(p_id uuid, p_at timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    a console_alerts;
BEGIN
    UPDATE console_alerts SET cleared_at = greatest(p_at, raised_at) WHERE id = p_id AND cleared_at IS NULL
        RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO outbox (event_type, occurred_at, producer, correlation_id, aggregate_id, aggregate_seq, payload)
    VALUES ('alert.cleared', a.cleared_at, 'ridehaild', p_id, p_id, 2,
            jsonb_build_object('alert_id', p_id, 'alert', a.alert, 'raised_at', rh_ts(a.raised_at),
                               'cleared_at', rh_ts(a.cleared_at),
                               'duration_s', round(extract(epoch FROM a.cleared_at - a.raised_at)::numeric, 3)));
    RETURN true;
END
$$;
