"""docs/openapi.yaml held to the code: the daemon serves it as /openapi.json,
it describes exactly the routes the modules register (the route tables in
src/) and exactly the problem types of include/net/problem.h, and it is a
well-formed document (every $ref resolves, every schema is valid JSON Schema
2020-12). The responses themselves are checked against it by the harness
on every request of every e2e test (tests/e2e/openapi.py)."""
import re

from jsonschema import Draft202012Validator

import openapi
from conftest import ROOT


def test_openapi_json_is_docs_openapi_yaml(daemon):
    r = daemon.get("/openapi.json")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == openapi.SPEC


def route_tables():
    """(METHOD, path) of every { HTTP_X, "/path", handler, flags } in src/."""
    out = set()
    for f in sorted((ROOT / "src").rglob("*.c")):
        for m, path in re.findall(r'\{\s*HTTP_(GET|POST|PUT|DELETE|PATCH),\s*"([^"]+)"', f.read_text()):
            out.add((m, path))
    return out


def test_every_route_is_documented_and_every_documented_route_exists():
    code = route_tables()
    doc = set(openapi.operations())
    assert len(code) > 25
    assert code - doc == set(), "routes missing from docs/openapi.yaml"
    assert doc - code == set(), "docs/openapi.yaml describes routes the daemon does not have"


def test_problem_types_are_the_daemons():
    header = (ROOT / "include" / "net" / "problem.h").read_text()
    slugs = re.findall(r'X\(PROBLEM_\w+,\s*\d+,\s*"([a-z-]+)"', header)
    assert len(slugs) > 30
    enum = openapi.SPEC["components"]["schemas"]["ProblemType"]["enum"]
    assert sorted(enum) == sorted("https://ridehail.dev/problems/" + s for s in slugs)
    # and docs/api.md's table of them
    api = (ROOT / "docs" / "api.md").read_text()
    table = set(re.findall(r"^\| `([a-z-]+)` \| \d{3} \|", api, re.M))
    assert table == set(slugs)


def test_document_is_well_formed():
    spec = openapi.SPEC
    assert spec["openapi"].startswith("3.1.")
    for name, schema in spec["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)

    def walk(node, where):
        if isinstance(node, dict):
            if "$ref" in node:
                openapi._resolver.resolve(node["$ref"])  # raises when it does not resolve
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")
    walk(spec, "")
    for method, path in openapi.operations():
        op = spec["paths"][path][method.lower()]
        assert op.get("summary"), (method, path)
        assert any(k.startswith("2") or k == "101" for k in op["responses"]), (method, path)
        assert "5XX" in op["responses"], (method, path)


def test_a_response_off_the_document_is_caught():
    """The check itself: a body the document does not allow fails it."""
    body = b'{"vehicle_type":"standard","distance_m":1,"duration_s":1,"method":"road"}'
    try:
        openapi.check_response("GET", "/v1/estimate?x=1", 200, {"content-type": "application/json"}, body)
    except AssertionError as e:
        assert "fare" in str(e)
    else:
        raise AssertionError("an estimate without its fare passed the check")
    try:
        openapi.check_response("GET", "/v1/estimate", 302, {"content-type": "application/json"}, b"{}")
    except AssertionError as e:
        assert "not documented" in str(e)
    else:
        raise AssertionError("an undocumented status passed the check")
