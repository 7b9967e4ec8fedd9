"""docs/openapi.yaml as the e2e harness uses it: every HTTP response a test
receives through the client helpers (conftest.Daemon.request, the TLS client
of test_deploy.py) is checked against the operation it answers, with
python3-jsonschema (Draft 2020-12, the dialect of OpenAPI 3.1), so the
document cannot drift from what the daemon sends.

check_response() raises AssertionError naming the operation, the status and
what did not match; record() keeps which (operation, status) pairs the run
saw, for the summary printed at the end of the session."""
import json
import re
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from jsonschema.validators import RefResolver

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "docs" / "openapi.yaml"
SPEC = yaml.safe_load(SPEC_PATH.read_text())
METHODS = ("get", "put", "post", "delete", "patch")

_resolver = RefResolver.from_schema(SPEC)
_validators = {}
seen = set()  # (METHOD, template, status key)


def _deref(obj):
    while isinstance(obj, dict) and "$ref" in obj:
        obj = _resolver.resolve(obj["$ref"])[1]
    return obj


def _template_re(template):
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")


# Literal paths before templated ones, so /v1/rides never matches a {param}.
_PATHS = sorted(((t, _template_re(t)) for t in SPEC["paths"]), key=lambda p: ("{" in p[0], p[0]))


def find_path(path):
    for template, rx in _PATHS:
        if rx.match(path):
            return template
    return None


def _validator(schema):
    key = id(schema)
    v = _validators.get(key)
    if v is None:
        v = _validators[key] = Draft202012Validator(schema, resolver=_resolver)
    return v


def _problem_schema():
    return {"$ref": "#/components/schemas/Problem"}


def _check_body(where, schema, ctype, body, status):
    if ctype in ("application/json", "application/problem+json", "application/geo+json"):
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise AssertionError(f"{where}: body is not JSON ({e}): {body[:300]!r}")
        errors = sorted(_validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            msgs = "; ".join(f"at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:5])
            raise AssertionError(f"{where}: the body does not match docs/openapi.yaml: {msgs}\nbody: {body[:1000]!r}")
        if ctype == "application/problem+json" and doc.get("status") != status:
            raise AssertionError(f"{where}: problem status {doc.get('status')} on an HTTP {status}")
    elif schema.get("type") == "string":
        body.decode("utf-8")  # text/plain: UTF-8 text


def check_response(method, target, status, headers, body):
    """headers: lower-case names. Raises AssertionError on a mismatch."""
    method = method.upper()
    path = target.split("?", 1)[0]
    ctype = (headers.get("content-type") or "").split(";")[0].strip()
    template = find_path(path)
    where = f"{method} {path} -> {status}"
    if template is None:
        # no such route: the daemon answers with a problem (404, or 400 for a
        # path it cannot parse)
        seen.add((method, "(unknown path)", str(status)))
        if status >= 400 and body:
            assert ctype == "application/problem+json", f"{where}: an unknown path answered {ctype}"
            _check_body(where, _problem_schema(), ctype, body, status)
        return
    item = SPEC["paths"][template]
    if method in ("HEAD", "OPTIONS"):
        seen.add((method, template, str(status)))
        if method == "HEAD":
            assert not body, f"{where}: HEAD with a body"
        return
    op = item.get(method.lower())
    where = f"{method} {template} -> {status}"
    if op is None:
        seen.add((method, template, str(status)))
        assert status in (405, 400, 413, 411, 415, 417, 431), \
            f"{where}: the method is not in docs/openapi.yaml for this path, yet it answered"
        _check_body(where, _problem_schema(), ctype, body, status)
        return
    responses = op["responses"]
    key = str(status)
    if key not in responses:
        key = f"{status // 100}XX"
    if key not in responses:
        key = "default"
    assert key in responses, f"{where}: status {status} is not documented for the operation in docs/openapi.yaml"
    seen.add((method, template, key))
    resp = _deref(responses[key])
    content = resp.get("content")
    if not content:
        return
    if ctype not in content:
        raise AssertionError(f"{where}: Content-Type {ctype!r} is not one of {sorted(content)} in docs/openapi.yaml")
    schema = content[ctype].get("schema")
    if schema is not None:
        _check_body(where, schema, ctype, body, status)


def operations():
    """Every (METHOD, template) the document describes."""
    return [(m.upper(), t) for t, item in SPEC["paths"].items() for m in METHODS if m in item]


def coverage_lines():
    ops = operations()
    hit = {(m, t) for (m, t, _) in seen}
    missed = [f"{m} {t}" for m, t in ops if (m, t) not in hit]
    lines = [f"openapi: {len(ops) - len(missed)} of {len(ops)} operations of docs/openapi.yaml answered in this run, "
             f"{len(seen)} (operation, status) pairs checked against it"]
    if missed and len(missed) <= 10:  # (a run of a few files misses most: no list then)
        lines.append("openapi: not exercised here: " + ", ".join(missed))
    return lines
