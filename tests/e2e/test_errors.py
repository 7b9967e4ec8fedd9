"""One mapping from a failure to what a client is told: the database away is
503 database-unavailable with Retry-After and without the database's own
words, on every path (REST and WebSocket); an id of the wrong shape is a
4xx, never a 503."""
from conftest import ADMIN_TOKEN, Daemon, PgCluster, problem
from test_presence import token_of
from wsapp import Driver, run

# What PostgreSQL or libpq say when they fail: none of it may reach a client.
DB_WORDS = ("syntax", "connection", "server", "postgres", "PQ", "SQLSTATE", "terminating", "socket", "could not")


def no_db_words(text):
    return not any(w.lower() in text.lower() for w in DB_WORDS)


def test_the_admin_token_has_no_account_me_is_404(daemon):
    body = problem(daemon.get("/v1/me", headers={"Authorization": "Bearer " + ADMIN_TOKEN}), 404, "not-found")
    assert no_db_words(body["detail"]), body


def test_database_away_is_503_with_retry_after_and_no_database_text(tmp_path):
    cluster = PgCluster()
    cluster.create_db("rh")
    d = Daemon(tmp_path, db_url=cluster.url("rh"), env={"RIDEHAIL_DATABASE_RECONNECT_MAX": "300ms",
                                                        "RIDEHAIL_DATABASE_QUERY_TIMEOUT": "1s"})
    try:
        d.start()
        rider, rhdr = d.rider_session()
        drv, dhdr = d.driver_session()

        async def go():
            app = await Driver.connect(d, token_of(dhdr), drv["id"])
            await app.recv("driver.status.changed")
            await app.ping(52.0907, 5.1214, accuracy_m=5)
            await app.go("available")  # online, so that a ride request reaches the database
            cluster.stop("immediate")
            d.wait_ready(timeout=5, want=503)
            replies = {
                "GET /v1/me": d.get("/v1/me", headers=rhdr),
                "GET /v1/rides": d.get("/v1/rides", headers=rhdr),
                "GET /v1/rides/{id}": d.get("/v1/rides/7b0f6a3e-8d1c-4b8e-9d3a-2f1e0c9b8a7d", headers=rhdr),
                "POST /v1/auth/login": d.post("/v1/auth/login", {"role": "rider", "email": rider["email"],
                                                                 "password": "rider-pass-1"}),
                "POST /v1/rides": d.post("/v1/rides", {"pickup": {"lat": 52.0907, "lng": 5.1214},
                                                       "dropoff": {"lat": 52.11, "lng": 5.14}}, headers=rhdr),
            }
            for what, r in replies.items():
                body = problem(r, 503, "database-unavailable")
                assert r.headers.get("retry-after") == "1", (what, r.headers)
                assert no_db_words(body["detail"]), (what, body)
            await app.send("driver.status.changed", {"driver_id": drv["id"], "status": "offline"})
            m = await app.rejected(reason="unavailable", timeout=10)
            assert no_db_words(m["payload"]["details"]), m
            await app.close()

        run(go())
        cluster.start()
        d.wait_ready(timeout=15)
        d.stop()
    finally:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
        cluster.destroy()
