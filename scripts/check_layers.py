#!/usr/bin/env python3
"""The layers of the source tree: each folder of src/ and include/ may include
only its own headers and those of folders below it (docs/architecture.md,
"Layers"). Prints every include that runs back up; exit 1 if any."""
import pathlib
import re
import sys

# rank: a folder includes its own and lower ranks only (a folder of the same
# rank is not below it)
RANK = {
    "core": 0,
    "geo": 1, "net": 1, "store": 1,
    "routing": 2, "events": 2, "auth": 2, "sim": 2,
    "gateway": 3, "pricing": 3,
    "trip": 4,
    "presence": 5,
    "match": 6, "share": 6,
    "console": 7,
    "daemon": 8,
}

root = pathlib.Path(__file__).resolve().parents[1]
inc = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/[^"]+"', re.M)
bad = []
for top in ("src", "include"):
    for path in sorted((root / top).glob("*/*.[ch]")):
        folder = path.parent.name
        if folder not in RANK:
            bad.append(f"{path.relative_to(root)}: folder {folder} has no place in the layers")
            continue
        for m in inc.finditer(path.read_text()):
            dep = m.group(1)
            if dep == folder:
                continue
            if dep not in RANK or RANK[dep] >= RANK[folder]:
                line = path.read_text().count("\n", 0, m.start()) + 1
                bad.append(f"{path.relative_to(root)}:{line}: {folder} includes {dep}/ (not below it)")
for b in bad:
    print(b)
if bad:
    sys.exit(1)
print(f"layers: every include runs down ({len(RANK)} folders)")
