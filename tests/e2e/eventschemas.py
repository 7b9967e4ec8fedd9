"""The JSON Schemas in schemas/ loaded into one registry, for the tests."""
import json
import re
from pathlib import Path

import jsonschema

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
BASE = "https://ridehail.dev/schemas/"

_store = None
_validators = {}

# RFC 3339 section 5.6, date-time (the T and Z may be lower case).
_DATE_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$")
_MDAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

format_checker = jsonschema.FormatChecker()


@format_checker.checks("date-time")
def is_date_time(s):
    """Checked here rather than by an optional package, so that the format is
    never silently skipped."""
    if not isinstance(s, str):
        return True
    m = _DATE_TIME.match(s)
    if not m:
        return False
    y, mo, d, h, mi, se = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= mo <= 12 and 1 <= d <= _MDAYS[mo - 1] and h <= 23 and mi <= 59 and se <= 60):
        return False
    if mo == 2 and d == 29 and not (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)):
        return False
    if m.group(9) is not None and (int(m.group(9)) > 23 or int(m.group(10)) > 59):
        return False
    return True


def store():
    global _store
    if _store is None:
        _store = {}
        for p in sorted(SCHEMAS.glob("*.schema.json")):
            doc = json.loads(p.read_text())
            _store[doc["$id"]] = doc
    return _store


def validator(name):
    """A draft 2020-12 validator for schemas/<name>, formats checked."""
    v = _validators.get(name)
    if v is None:
        schema = store()[BASE + name]
        resolver = jsonschema.RefResolver(BASE + name, schema, store=store())
        v = jsonschema.Draft202012Validator(schema, resolver=resolver, format_checker=format_checker)
        _validators[name] = v
    return v


def violations(name, instance):
    """Every (dotted path, keyword) the schema finds. A `required` or
    `additionalProperties` error is named by the member it is about, as the
    daemon names it."""
    out = set()
    for e in validator(name).iter_errors(instance):
        path = ".".join(str(x) for x in e.absolute_path)
        kw = e.validator
        if kw == "required":
            m = re.match(r"'([^']*)' is a required property", e.message)
            member = m.group(1) if m else "?"
            out.add((path + "." + member if path else member, kw))
        elif kw == "additionalProperties":
            for member in set(e.instance) - set(e.schema.get("properties", {})):
                out.add((path + "." + member if path else member, kw))
        else:
            out.add((path, kw))
    return out


def outbox_schema(event_type):
    return "outbox-event.schema.json"
