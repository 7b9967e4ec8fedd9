-- 016: the payment hand-off.
--
-- A trip that completes (its final fare) or is cancelled with a fee gets a
-- payment in the same transaction, with an idempotency key for the
-- provider and a payment.requested event (its own aggregate: the payment,
-- correlated with the trip); a trigger on the trip's ending event writes
-- both, so no path that ends a trip can skip it. The provider answers on
-- POST /v1/payments/{trip_id}/result (signed; src/pricing/payments.c):
-- payment_result() records payment.succeeded or payment.failed, once per
-- provider event, and a rider with a failed payment not yet cleared is held
-- (402 payment-required) until a later payment succeeds or an operator
-- clears it. Every change of a rider's hold is NOTIFYed on
-- ridehail_payments ("<rider_id>:held:<trip_id>" or "<rider_id>:free").
--
-- The functions, and the trigger on outbox that requests a payment, are in
-- sql/functions/20_payments.sql.

CREATE TABLE payments (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trip_id         uuid NOT NULL UNIQUE REFERENCES trips (id),
    rider_id        uuid NOT NULL REFERENCES riders (id),
    kind            text NOT NULL CHECK (kind IN ('fare', 'cancellation_fee')),
    idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 100),
    amount          rh_amount NOT NULL,
    currency        rh_currency NOT NULL,
    state           text NOT NULL DEFAULT 'requested' CHECK (state IN ('requested', 'succeeded', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    provider_ref    text CHECK (length(provider_ref) <= 200),
    failure_reason  text CHECK (length(failure_reason) <= 200),
    event_seq       integer NOT NULL DEFAULT 1 CHECK (event_seq >= 1), -- its last outbox aggregate_seq
    requested_at    timestamptz NOT NULL DEFAULT now(),
    settled_at      timestamptz,
    cleared_by      text,
    cleared_at      timestamptz,
    CHECK ((cleared_at IS NULL) = (cleared_by IS NULL))
);
CREATE INDEX payments_holds ON payments (rider_id) WHERE state = 'failed' AND cleared_at IS NULL;

-- Every provider result taken, by the provider's own event id: the same
-- result again changes nothing.
CREATE TABLE payment_results (
    payment_id        uuid NOT NULL REFERENCES payments (id),
    provider_event_id text NOT NULL CHECK (length(provider_event_id) BETWEEN 1 AND 100),
    status            text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    body_hash         text NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payment_id, provider_event_id)
);
