#!/usr/bin/env python3
"""Checks that the top-level modules of src/ depend on each other without cycles.

A top-level module is `src/x.rs` or the directory `src/x/` (both, when a module keeps its
submodules or tests in a directory of its own name); `src/lib.rs` and `src/main.rs` are the crate
roots, not modules. An edge `a -> b` is a path into module `b` written in module `a`'s code:
`crate::b::...`, `use crate::{b, ...}`, or `super::...::b` climbing up to the crate root.

Test-only code is left out: files named `tests.rs` or under a `tests/` directory, and the item
after a `#[cfg(test)]` line (a `#[cfg(test)]` at the start of a line closes the file for this
check, as the tests come last by convention; an indented one leaves out the item it annotates).
Comments, strings and character literals are ignored.

Usage: scripts/check-module-cycles.py [--list] [SRC_DIR]
  --list   print every edge, one `a -> b` a line
Exit status: 0 without cycles, 1 naming each elementary cycle (`cycle: a -> b -> a`).
"""

import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")


def strip_comments_and_literals(text):
    """The code with comments, strings and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)

    def blank(segment):
        return "".join("\n" if c == "\n" else " " for c in segment)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(blank(text[i:end]))
            i = end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not re.match(r"[A-Za-z0-9_]", text[i - 1])
                                                          or text[i - 1] == "b"):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            close = '"' + hashes
            end = text.find(close, i + len(hashes) + 2)
            end = n if end < 0 else end + len(close)
            out.append(blank(text[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(blank(text[i:j + 1]))
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}'), else a lifetime or label ('a).
            m = re.match(r"'(\\(u\{[0-9A-Fa-f]*\}|x[0-9A-Fa-f]{2}|.)|[^\\'\n])'", text[i:])
            if m:
                out.append(blank(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_items(code):
    """The code without the items annotated `#[cfg(test)]` (see the module docstring)."""
    while True:
        m = CFG_TEST.search(code)
        if not m:
            return code
        line_start = code.rfind("\n", 0, m.start()) + 1
        if m.start() == line_start:
            return code[:m.start()]
        # Skip the annotated item: further attributes, then up to its `;` or its closing brace.
        i, n, depth = m.end(), len(code), 0
        while i < n:
            c = code[i]
            if c == "#" and depth == 0:
                end = code.find("]", i)
                i = n if end < 0 else end + 1
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    i += 1
                    break
            elif c == ";" and depth == 0:
                i += 1
                break
            i += 1
        code = code[:m.start()] + "\n" + code[i:]


def split_top_level(group):
    """The comma-separated items of a `{...}` group's inside, nested groups kept whole."""
    items, depth, current = [], 0, []
    for c in group:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if c == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(c)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def brace_group(code, open_index):
    """The inside of the `{...}` group opening at `open_index`."""
    depth = 0
    for j in range(open_index, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return code[open_index + 1:j]
    return code[open_index + 1:]


def first_segments(code, prefix_end):
    """The first path segment(s) after a `crate::`-like prefix ending at `prefix_end`."""
    rest = code[prefix_end:].lstrip()
    if rest.startswith("{"):
        start = prefix_end + (len(code[prefix_end:]) - len(rest))
        return [re.match(IDENT, item).group(0) for item in split_top_level(brace_group(code, start))
                if re.match(IDENT, item)]
    m = re.match(IDENT, rest)
    return [m.group(0)] if m else []


def module_of(relative):
    """(top-level module, depth of the file's module path) of a path relative to src/."""
    parts = relative.split(os.sep)
    top = parts[0][:-3] if parts[0].endswith(".rs") else parts[0]
    depth = len(parts)
    if parts[-1] == "mod.rs":
        depth -= 1
    return top, depth


def edges_of(src):
    modules = set()
    for entry in os.listdir(src):
        path = os.path.join(src, entry)
        if entry.endswith(".rs") and entry not in ("lib.rs", "main.rs"):
            modules.add(entry[:-3])
        elif os.path.isdir(path) and (os.path.exists(path + ".rs") or os.path.exists(os.path.join(path, "mod.rs"))):
            modules.add(entry)
    edges = {}
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != "tests")
        for name in sorted(files):
            if not name.endswith(".rs") or name == "tests.rs":
                continue
            path = os.path.join(root, name)
            relative = os.path.relpath(path, src)
            if relative in ("lib.rs", "main.rs"):
                continue
            module, depth = module_of(relative)
            if module not in modules:
                continue
            with open(path, encoding="utf-8") as f:
                code = drop_test_items(strip_comments_and_literals(f.read()))
            targets = set()
            for m in re.finditer(r"\bcrate\s*::", code):
                targets.update(first_segments(code, m.end()))
            for m in re.finditer(r"\b((?:super\s*::\s*)+)", code):
                if m.group(1).count("super") >= depth:
                    targets.update(first_segments(code, m.end()))
            for target in targets:
                if target in modules and target != module:
                    edges.setdefault(module, set()).add(target)
    return modules, edges


def elementary_cycles(nodes, edges):
    """Every elementary cycle, each once, starting from its smallest module."""
    cycles = []
    order = sorted(nodes)
    for start in order:
        allowed = {n for n in order if n >= start}
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(edges.get(node, ()), reverse=True):
                if nxt == start:
                    cycles.append(path + [start])
                elif nxt in allowed and nxt not in path:
                    stack.append((nxt, path + [nxt]))
    return sorted(cycles, key=lambda c: (len(c), c))


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    unknown = [a for a in argv if a.startswith("--") and a != "--list"]
    if unknown or len(args) > 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    modules, edges = edges_of(src)
    if "--list" in argv:
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f"{a} -> {b}")
    cycles = elementary_cycles(modules, edges)
    for cycle in cycles:
        print("cycle: " + " -> ".join(cycle))
    if cycles:
        print(f"{len(cycles)} cycle(s) between the top-level modules of {os.path.normpath(src)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
