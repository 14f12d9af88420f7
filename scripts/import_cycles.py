"""Fails when files of a crate import each other in a circle.

Each `.rs` file is a module; a `use` of `crate::`, `super::`, `self::` or a
child module (grouped paths included), or a `crate::`/`super::` path written
inline, is an edge to the file that defines the
longest matching module path. Test modules (after `#[cfg(test)]`) do not
count. `make test` runs it over every crate's `src`.

Usage: import_cycles.py SRC_DIR [SRC_DIR ...]
"""
import os
import re
import sys

USE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", re.M)
# paths written inline (`super::fanout::plan(...)`, `crate::time::now()`)
INLINE = re.compile(r"\b(?:crate|super)(?:::\w+)+")


def modules(root):
    files = {}
    for d, _, names in os.walk(root):
        for name in names:
            if name.endswith(".rs"):
                rel = os.path.relpath(os.path.join(d, name), root)[:-3]
                parts = [p for p in rel.split(os.sep) if p not in ("mod", "lib", "main")]
                if name == "main.rs":
                    continue  # a binary's root, not part of the library
                files["/".join(parts)] = os.path.join(d, name)
    return files


def paths(use):
    """`a::{b, c::d}` → ["a::b", "a::c::d"] (one level of grouping)."""
    use = " ".join(use.split())
    if "{" not in use:
        return [use.split(" as ")[0]]
    prefix, _, rest = use.partition("{")
    items, depth, cur = [], 0, ""
    for ch in rest.rstrip("}"):
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    out = []
    for item in items:
        item = item.strip().split("::{")[0].split(" as ")[0]
        if item and item != "self":
            out.append(prefix + item)
        elif item == "self":
            out.append(prefix.rstrip(":"))
    return out


def resolve(files, cur, path):
    parts = [p for p in path.split("::") if p]
    base = cur.split("/") if cur else []
    if not parts:
        return None
    if parts[0] == "crate":
        segs, parts = [], parts[1:]
    elif parts[0] == "super":
        segs, parts = base[:-1], parts[1:]
    elif parts[0] == "self":
        segs, parts = base, parts[1:]
    elif "/".join(base + [parts[0]]) in files:
        segs = base
    else:
        return None  # another crate
    best = None
    for i in range(len(parts) + 1):
        cand = "/".join(segs + parts[:i])
        if cand in files:
            best = cand
    return best


def cycles(root):
    files = modules(root)
    edges = {}
    for mod, path in files.items():
        src = open(path).read().split("#[cfg(test)]")[0]
        deps = set()
        found_paths = [p for m in USE.finditer(src) for p in paths(m.group(1))]
        found_paths += [m.group(0) for m in INLINE.finditer(USE.sub("", src))]
        for p in found_paths:
            if True:
                target = resolve(files, mod, p)
                if target is not None and target != mod:
                    deps.add(target)
        edges[mod] = deps
    found = set()

    def walk(start, node, seen):
        for nxt in edges.get(node, ()):
            if nxt == start:
                found.add(tuple(sorted(seen)))
            elif nxt not in seen and len(seen) < 8:
                walk(start, nxt, seen + [nxt])

    for mod in edges:
        walk(mod, mod, [mod])
    return sorted(found)


def main():
    bad = 0
    for root in sys.argv[1:]:
        for cycle in cycles(root):
            bad += 1
            names = [c or "lib" for c in cycle]
            print(f"{root}: import cycle between {' and '.join(names)}")
    print(f"import cycles: {bad} in {len(sys.argv) - 1} crates")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
