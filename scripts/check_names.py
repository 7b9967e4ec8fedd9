#!/usr/bin/env python3
"""Function names and their module's prefix (docs/architecture.md, "Names").

Every function defined in src/<folder>/ or include/<folder>/, static ones too,
starts with one of the prefixes PREFIXES allows for its folder, so that a
backtrace, a profile or a grep tells the module at once (`module_object_verb`:
geo_grid_insert, cfg_key_find, sb_printf).

    scripts/check_names.py [FILE...]   offenders, one `path:line: name` a line,
                                       and the functions longer than 80 lines;
                                       exit 1 if any (default: every file;
                                       what `make check` runs)
    scripts/check_names.py --report [FILE...]
                                       how many offenders each file has, and
                                       the functions longer than 80 lines;
                                       exit 0
    scripts/check_names.py --long[=N] [FILE...]
                                       functions longer than N lines (80),
                                       longest first, with their length
    scripts/check_names.py --unused [FILE...]
                                       functions defined without `static` in
                                       src/ that no other file of src/, include/
                                       (macros, inline bodies), tools/, bench/
                                       or tests/ names: dead, or to be static
                                       (those only tests/ names are listed too)

`make check-names` runs the first, and `make check` runs it. The parsing is lexical (comments, strings
and preprocessor lines dropped, braces counted), which is enough for this
tree's style: a function definition is `name(...) {` at file scope.
"""
import pathlib
import re
import sys

# folder -> the prefixes its functions may carry; a prefix names the module
# (or one file's object) the function belongs to. A file that implements one
# object of its module may use that object's name, after the file, as its
# prefix: each such prefix is listed with the file it belongs to.
PREFIXES = {
    # rh_: alloc.c, clock.c, err.c, timer.c (rh_timer_, rh_timers_) and the
    # strbuf helper rh_copy; tariff_: settings.h's tariff lookups
    "core": ["rh_", "cfg_", "config_", "log_", "metrics_", "metric_", "sb_", "umap_", "uuid_",
             "worker_", "proxy_", "tariff_",
             # fd_budget_: fdbudget.c, the descriptor budget
             "fd_budget_"],
    # err_: problem.c's err_reply_of, the one failure -> reply mapping
    # conn_counts_: conncount.c, the connections counted per address
    "net": ["http_", "ws_", "stream_", "jv_", "problem_", "ratelimit_", "sha1_", "utf8_", "num_", "err_",
            "conn_counts_"],
    "store": ["db_", "migrate_", "migrator_", "migrations_"],
    # revoke_: revoke.c, the revoked-token map
    "auth": ["auth_", "jwt_", "revoke_"],
    "gateway": ["gateway_", "gw_"],
    "geo": ["geo_", "geohash_"],
    # gps_check_: gps_check.c, the GPS fix sanity check
    "presence": ["presence_", "driver_status_", "history_", "gps_check_"],
    # book_: the pricing book (book.c, include/pricing/book.h); surge_: the
    # surge engine (surge.c, include/pricing/surge.h)
    "pricing": ["pricing_", "book_", "surge_"],
    "trip": ["trip_", "trips_"],
    "match": ["match_", "matcher_", "dispatch_", "assign_", "reposition_"],
    # rmap_: the map file's format (graph.h), written by import.c
    "routing": ["routing_", "graph_", "ch_", "import_", "mapfile_", "calibrate_", "trips_csv_", "rmap_"],
    "events": ["events_", "webhook_", "webhooks_", "relay_", "tail_"],
    # simc_: the app-protocol client (client.c, include/sim/client.h)
    "sim": ["sim_", "simc_"],
    "console": ["console_"],
    "share": ["share_"],
    "daemon": ["server_", "admin_", "health_", "openapi_", "main"],
}

ROOT = pathlib.Path(__file__).resolve().parents[1]
KEYWORDS = {"if", "while", "for", "switch", "return", "sizeof", "do", "else"}


def strip(text):
    """Comments, string and character literals, and preprocessor lines
    blanked (newlines kept, so line numbers hold)."""
    out = []
    tok = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|^[ \t]*#(?:\\\n|[^\n])*',
                     re.S | re.M)
    pos = 0
    for m in tok.finditer(text):
        out.append(text[pos:m.start()])
        out.append(re.sub(r"[^\n]", " ", m.group(0)))
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def strip_keep_macros(text):
    """As strip, but preprocessor lines stay (a macro may call a function)."""
    tok = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
    return tok.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def tokens(text):
    line = 1
    for m in re.finditer(r"[A-Za-z_]\w*|\S|\n", text):
        t = m.group(0)
        if t == "\n":
            line += 1
        else:
            yield t, line


def definitions(path, spans=False):
    """(name, line, is_static) of every function defined in path; with
    spans, (name, line, is_static, lines) where lines counts the body's
    lines from its opening brace to its closing one."""
    toks = list(tokens(strip(path.read_text())))
    found = []
    depth = 0
    start = 0  # index of the first token of the current file-scope declaration
    body = None  # the definition whose body is open, and its brace's line
    for i, (t, line) in enumerate(toks):
        if t == "{":
            if depth == 0:
                d = definition_at(toks, i, start)
                body = (d, line) if d else None
                if d and not spans:
                    found.append(d)
            depth += 1
        elif t == "}":
            depth -= 1
            if depth == 0:
                start = i + 1
                if body and spans:
                    found.append(body[0] + (line - body[1] + 1,))
                body = None
        elif t == ";" and depth == 0:
            start = i + 1
    return found


def definition_at(toks, brace, start):
    j = brace - 1
    while j > start:
        t = toks[j][0]
        if t == ")":
            # back to the matching "(", then the word before it
            level = 0
            while j > start:
                if toks[j][0] == ")":
                    level += 1
                elif toks[j][0] == "(":
                    level -= 1
                    if level == 0:
                        break
                j -= 1
            j -= 1
            name = toks[j][0]
            if name == "__attribute__" or re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                j -= 1  # an attribute after the declarator: keep going back
                continue
            if not re.fullmatch(r"[A-Za-z_]\w*", name) or name in KEYWORDS:
                return None
            # `void (*f(int))(void)` and the like are not written here
            is_static = any(tok == "static" for tok, _ in toks[start:j])
            return name, toks[j][1], is_static
        if re.fullmatch(r"[A-Z][A-Z0-9_]*", t):
            j -= 1  # RH_MUST_CHECK and such
            continue
        return None
    return None


def folder_of(path):
    rel = path.relative_to(ROOT).parts
    return rel[1] if len(rel) >= 3 and rel[0] in ("src", "include") else None


def default_files():
    return sorted(list(ROOT.glob("src/*/*.[ch]")) + list(ROOT.glob("include/*/*.h")))


LONG = 80  # lines a function may take, from its opening brace to its closing one


def check(files):
    bad = offenders(files)
    for b in bad:
        print(b)
    longs = long_functions(files, LONG)
    for lines, f, line, name in longs:
        print(f"{f}:{line}: {name}: {lines} lines, more than {LONG}")
    if bad:
        print(f"names: {len(bad)} functions without their module's prefix", file=sys.stderr)
    if longs:
        print(f"names: {len(longs)} functions longer than {LONG} lines: split them into named steps",
              file=sys.stderr)
    if bad or longs:
        return 1
    print(f"names: every function carries its module's prefix, none is longer than {LONG} lines")
    return 0


def offenders(files):
    """`path:line: name` of every function without one of its folder's
    prefixes (or a line saying a folder has none)."""
    bad = []
    for path in files:
        folder = folder_of(path)
        if folder is None:
            continue
        allowed = PREFIXES.get(folder)
        if allowed is None:
            bad.append(f"{path.relative_to(ROOT)}: folder {folder} has no prefixes in scripts/check_names.py")
            continue
        for name, line, _ in definitions(path):
            if not any(name == a or name.startswith(a) for a in allowed):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    return bad


def long_functions(files, limit):
    """(lines, path, line, name) of the functions longer than limit, longest first."""
    out = []
    for path in files:
        if folder_of(path) is None:
            continue
        for name, line, _, lines in definitions(path, spans=True):
            if lines > limit:
                out.append((lines, str(path.relative_to(ROOT)), line, name))
    return sorted(out, key=lambda x: (-x[0], x[1], x[2]))


def report(files):
    """Counts, for make check while offenders remain: never fails."""
    bad = offenders(files)
    per_file = {}
    for b in bad:
        f = b.split(":")[0]
        per_file[f] = per_file.get(f, 0) + 1
    if bad:
        print(f"names: {len(bad)} functions without their module's prefix (make check-names lists them):")
        for f, n in sorted(per_file.items(), key=lambda x: (-x[1], x[0])):
            print(f"  {n:4d} {f}")
    else:
        print("names: every function carries its module's prefix")
    longs = long_functions(files, 80)
    print(f"names: {len(longs)} functions longer than 80 lines{':' if longs else ''}")
    for lines, f, line, name in longs:
        print(f"  {lines:4d} {f}:{line}: {name}")
    return 0


def unused(files):
    """Exported functions of `files` that no other file names."""
    sources = [p for top in ("src", "include", "tools", "bench", "tests")
               for p in sorted((ROOT / top).rglob("*")) if p.suffix in (".c", ".h")]
    words = {}
    for p in sources:
        text = strip_keep_macros(p.read_text(errors="replace"))
        if p.suffix == ".h":
            # a header's prototypes declare, they do not use: drop them
            text = re.sub(r"^[A-Za-z_][^;{}#]*?\b([a-z_]\w*)\s*\([^;{}]*\)[^;{}]*;", " ", text, flags=re.M)
        words[p] = set(re.findall(r"[A-Za-z_]\w*", text))
    out = []
    for path in files:
        if path.suffix != ".c" or folder_of(path) is None:
            continue
        text = strip(path.read_text())
        for name, line, is_static in definitions(path):
            if is_static or name == "main":
                continue
            users = [p for p in sources if p != path and name in words[p]]
            tests = [p for p in users if p.relative_to(ROOT).parts[0] == "tests"]
            if len(users) > len(tests):
                continue
            calls = len(re.findall(r"\b%s\b" % re.escape(name), text)) - 1
            why = f"used in its own file only ({calls}x)" if calls else "never used"
            if tests:
                why += ", and by " + ", ".join(str(p.relative_to(ROOT)) for p in tests)
            elif calls:
                why += ": could be static"
            out.append(f"{path.relative_to(ROOT)}:{line}: {name}: {why}")
    for o in out:
        print(o)
    print(f"names: {len(out)} exported functions no other file (but tests) uses", file=sys.stderr)
    return 0


def main(argv):
    mode = "check"
    limit = 80
    args = []
    for a in argv:
        if a in ("--unused", "--report", "--long"):
            mode = a[2:]
        elif a.startswith("--long="):
            mode, limit = "long", int(a[len("--long="):])
        elif a.startswith("--"):
            print(f"check_names.py: unknown option {a}", file=sys.stderr)
            return 2
        else:
            args.append(a)
    files = [pathlib.Path(a).resolve() for a in args] or default_files()
    if mode == "long":
        for lines, f, line, name in long_functions(files, limit):
            print(f"{f}:{line}: {name}: {lines} lines")
        return 0
    return {"unused": unused, "report": report, "check": check}[mode](files)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
