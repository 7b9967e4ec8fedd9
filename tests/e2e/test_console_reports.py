"""The operator's reports as CSV (GET /v1/admin/reports/daily.csv and
drivers.csv) against trips driven through the real daemon and database:
the figures must be the trips', to the cent."""
import csv
import datetime
import io
import uuid

from conftest import problem, wait_for
from test_presence import token_of
from test_schemas import full_trip
from test_trips import UTRECHT
from wsapp import Driver, run


def rows(resp):
    assert resp.status == 200, resp
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert resp.body.endswith(b"\r\n")
    return list(csv.DictReader(io.StringIO(resp.body.decode())))


def test_daily_and_driver_reports(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_MATCH_AUTO": "false"})  # full_trip assigns by hand
    done, cancelled = full_trip(d, pg)
    fare, driver, currency = pg.query(d.db, "SELECT fare_final, driver_id, currency FROM trips WHERE id = %s",
                                      (done,))[0]
    # a driver whose name needs quoting, online for a while (their fixes in
    # the location history)
    odd, oh = d.driver_session(name='Dana "D", Jr')

    async def online():
        app = await Driver.connect(d, token_of(oh), odd["id"])
        await app.recv("driver.status.changed")
        await app.ping(*UTRECHT, accuracy_m=5)
        await app.close()
    run(online())
    wait_for(lambda: pg.query(d.db, "SELECT count(*) FROM driver_locations WHERE driver_id = %s",
                              (odd["id"],))[0][0] > 0, what="the fix in the history")

    today = datetime.datetime.now(datetime.timezone.utc).date()
    r = d.get("/v1/admin/reports/daily.csv", headers=d.admin)
    days = rows(r)
    assert [x["day"] for x in days] == [str(today - datetime.timedelta(days=6 - i)) for i in range(7)]
    assert r.headers["content-disposition"] == \
        f'attachment; filename="ridehail-daily-{today - datetime.timedelta(days=6)}-{today}.csv"'
    t = days[-1]
    assert t == {"day": str(today), "currency": currency, "trips": "2", "completed": "1", "cancelled": "1",
                 "completion_rate": "0.5000", "cancellation_rate": "0.5000", "revenue": str(fare)}, t
    assert all(x["trips"] == "0" and x["completion_rate"] == "" for x in days[:-1]), days

    drivers = {x["driver_id"]: x for x in rows(d.get(f"/v1/admin/reports/drivers.csv?from={today}&to={today}",
                                                        headers=d.admin))}
    mine = drivers[driver]
    assert (mine["trips_completed"], mine["earnings"], mine["currency"]) == ("1", str(fare), currency), mine
    assert float(mine["hours_online"]) > 0, mine  # it pinged before its trip
    o = drivers[odd["id"]]
    assert o["name"] == 'Dana "D", Jr' and o["trips_completed"] == "0" and o["earnings"] == "0", o
    assert o["currency"] == "" and 0 < float(o["hours_online"]) <= 0.05, o
    # another day: nothing
    assert rows(d.get("/v1/admin/reports/drivers.csv?from=2020-01-01&to=2020-01-02", headers=d.admin)) == []


def test_report_refusals(daemon):
    d = daemon
    _, rh = d.rider_session()
    problem(d.get("/v1/admin/reports/daily.csv", headers=rh), 403, "forbidden")
    problem(d.get("/v1/admin/reports/daily.csv"), 401, "unauthorized")
    problem(d.get("/v1/admin/reports/monthly.csv", headers=d.admin), 404, "not-found")
    for q, field in (("from=2026-02-30", "from"), ("to=2026-13-01", "to"), ("from=26-01-01", "from"),
                     ("from=2026-01-02&to=2026-01-01", "from"), ("from=2024-01-01&to=2025-01-01", "from"),
                     ("to=2026-01-0x", "to")):
        r = d.get(f"/v1/admin/reports/daily.csv?{q}", headers=d.admin)
        assert r.status == 400 and r.json()["field"] == field, (q, r)
    # a leap day is a day; 366 days is the most
    assert d.get("/v1/admin/reports/daily.csv?from=2024-02-29&to=2024-02-29", headers=d.admin).status == 200
    assert len(rows(d.get("/v1/admin/reports/daily.csv?from=2024-01-01&to=2024-12-31", headers=d.admin))) == 366
