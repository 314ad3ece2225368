#!/usr/bin/env python3
"""Reports import cycles between the modules of each library crate in the workspace.

Usage: .ci/module-cycles.py [CRATE_SRC_DIR ...]   (default: every member's `src/`)
Exits 1 when a cycle is found, 0 otherwise.

What counts as an edge: a path in a module's file (`use` trees and paths in code that start
with `crate::`, `super::`, `self::` or a child module's name) that names an item of another
module. Re-exports and imports are followed to the module that defines the item, so
`use super::Thing` where the parent re-exports `sibling::Thing` counts as an edge to
`sibling`. Two modules are compared below their nearest common ancestor: an edge from
`a::x` to `b::y` is an edge `a -> b` among the children of the crate root, and an edge from
`a::x` to `a::y` is an edge `x -> y` among the children of `a`. A module that uses its own
ancestor (e.g. `super::Error` defined in the parent's file) is not a cycle. Every sibling
group must be acyclic.
"""

import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(text):
    """Blanks comments, string and char literals, keeping newlines and brace structure."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif m := re.match(r'b?r(#*)"', text[i:i + 260]) if c in "rb" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")) else None:
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and (m := re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12])):
            out.append("' '")
            i += m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_use_tree(s):
    """Expands a use tree (`a::{b, c::d as e, f::*}`) into (path list, alias) pairs."""
    s = re.sub(r"\s+", "", s)
    result = []

    def walk(prefix, text):
        depth, start, parts = 0, 0, []
        for k, ch in enumerate(text):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(text[start:k])
                start = k + 1
        parts.append(text[start:])
        for part in parts:
            if not part:
                continue
            brace = part.find("{")
            if brace >= 0:
                head = part[:brace].rstrip(":")
                walk(prefix + [p for p in head.split("::") if p], part[brace + 1:part.rfind("}")])
            else:
                alias = None
                if "as" in part and re.search(r"as(" + IDENT + r")$", part):
                    m = re.match(r"(.*?)as(" + IDENT + r")$", part)
                    # `foo::barasbaz` cannot be told from `foo::bar as baz` once spaces are
                    # gone, so the alias is recovered from the original spacing below.
                    part, alias = m.group(1), m.group(2)
                segs = [p for p in part.split("::") if p]
                if segs and segs[-1] == "self":
                    segs = segs[:-1]
                result.append((prefix + segs, alias))

    walk([], s)
    return result


def use_statements(text):
    """Yields (is_pub, tree text) for each `use` item, aliases kept as `a as b`."""
    for m in re.finditer(r"(?m)^\s*(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text):
        tree = re.sub(r"\s+as\s+", "as", m.group(2))
        yield bool(m.group(1)), tree, m.start()


class Crate:
    def __init__(self, src):
        self.src = src
        self.files = {}  # module path tuple -> stripped text
        self.inline = defaultdict(list)  # file module -> [(start, end, submodule path)]
        for root, _dirs, names in os.walk(src):
            for name in names:
                if not name.endswith(".rs"):
                    continue
                rel = os.path.relpath(os.path.join(root, name), src)
                parts = rel[:-3].split(os.sep)
                if parts == ["main"] or parts[0] == "bin":
                    continue
                if parts[-1] in ("mod", "lib"):
                    parts = parts[:-1]
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    self.files[tuple(parts)] = strip(f.read())
        self.modules = set(self.files)
        for mod, text in self.files.items():
            for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", text):
                start = m.end() - 1
                depth, j = 0, start
                while j < len(text):
                    if text[j] == "{":
                        depth += 1
                    elif text[j] == "}":
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                self.inline[mod].append((start, j, mod + (m.group(1),)))
                self.modules.add(mod + (m.group(1),))
        self.imports = defaultdict(dict)  # module -> name -> absolute path
        self.globs = defaultdict(list)  # module -> [absolute module path]
        self.defs = defaultdict(set)  # module -> item names defined there
        for mod, text in self.files.items():
            for _pub, tree, pos in use_statements(text):
                scope = self.scope_at(mod, pos)
                for path, alias in parse_use_tree(tree):
                    abs_path = self.absolute(scope, path)
                    if abs_path is None:
                        continue
                    if path and path[-1] == "*":
                        self.globs[scope].append(tuple(abs_path[:-1]))
                    elif abs_path:
                        self.imports[scope][alias or abs_path[-1]] = tuple(abs_path)
            item = r"\b(?:struct|enum|fn|trait|type|const|static|union|macro_rules!)\s+(" + IDENT + ")"
            for m in re.finditer(item, text):
                self.defs[self.scope_at(mod, m.start())].add(m.group(1))

    def scope_at(self, mod, pos):
        scope = mod
        for start, end, sub in self.inline.get(mod, []):
            if start <= pos <= end and len(sub) > len(scope):
                scope = sub
        return scope

    def absolute(self, scope, path):
        """Resolves a path written in `scope` to an absolute one in this crate, or None."""
        if not path:
            return None
        head, rest = path[0], list(path[1:])
        if head == "crate":
            return rest
        if head == "self":
            return list(scope) + rest
        if head == "super":
            base = list(scope)
            segs = list(path)
            while segs and segs[0] == "super":
                base = base[:-1]
                segs = segs[1:]
            return base + segs
        if tuple(scope) + (head,) in self.modules:
            return list(scope) + list(path)
        if head in self.imports.get(tuple(scope), {}):
            return list(self.imports[tuple(scope)][head]) + rest
        return None

    def defining_module(self, path, seen=None):
        """The module that defines the item `path` names (following imports), or the
        deepest module on the path."""
        seen = seen or set()
        path = tuple(path)
        if path in seen:
            return None
        seen.add(path)
        k = len(path)
        while k > 0 and path[:k] not in self.modules:
            k -= 1
        mod = path[:k]
        if k == len(path):
            return mod
        name = path[k]
        if name in self.defs.get(mod, ()):
            return mod
        if name in self.imports.get(mod, {}):
            target = self.imports[mod][name] + path[k + 1:]
            return self.defining_module(target, seen) or mod
        for glob in self.globs.get(mod, []):
            if glob in self.modules and (name in self.defs.get(glob, ()) or name in self.imports.get(glob, {})):
                return self.defining_module(glob + path[k:], seen) or mod
        return mod

    def edges(self):
        found = defaultdict(set)  # (parent, a, b) -> examples
        path_re = re.compile(r"(?<![A-Za-z0-9_:])((?:crate|super|self|" + IDENT + r")(?:::" + IDENT + r")+)")
        for mod, text in self.files.items():
            uses = [(m.start(), m.end()) for m in re.finditer(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+[^;]+;", text)]
            refs = []
            for _pub, tree, pos in use_statements(text):
                for path, _alias in parse_use_tree(tree):
                    refs.append((pos, path))
            for m in path_re.finditer(text):
                if any(a <= m.start() < b for a, b in uses):
                    continue
                refs.append((m.start(), m.group(1).split("::")))
            for pos, path in refs:
                scope = self.scope_at(mod, pos)
                if path and path[-1] == "*":
                    path = path[:-1]
                abs_path = self.absolute(scope, path)
                if abs_path is None:
                    continue
                target = self.defining_module(abs_path)
                if target is None:
                    continue
                src = mod  # inline test modules count as their file's module
                k = 0
                while k < min(len(src), len(target)) and src[k] == target[k]:
                    k += 1
                if k == len(src) or k == len(target):
                    continue  # ancestor or descendant
                line = text.count("\n", 0, pos) + 1
                found[(src[:k], src[k], target[k])].add(f"{'/'.join(mod) or 'lib'}:{line} {'::'.join(path)}")
        return found


def cycles(edges):
    """Strongly connected components with more than one member, per parent module."""
    groups = defaultdict(lambda: defaultdict(set))
    for parent, a, b in edges:
        groups[parent][a].add(b)
    out = []
    for parent, graph in groups.items():
        index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in graph.get(v, ()):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    sccs.append(sorted(comp))

        for v in list(graph):
            if v not in index:
                visit(v)
        out.extend((parent, comp) for comp in sccs)
    return out


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    dirs = argv or sorted(
        os.path.join(root, d, "src") for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "src", "lib.rs"))
    )
    bad = False
    for src in dirs:
        crate = Crate(src)
        edges = crate.edges()
        found = cycles(edges)
        name = os.path.relpath(os.path.dirname(src), root)
        if not found:
            print(f"{name}: no module cycles ({len(crate.files)} files)")
            continue
        bad = True
        for parent, comp in found:
            where = "::".join(parent) or "crate"
            print(f"{name}: cycle among children of {where}: {' <-> '.join(comp)}")
            for a in comp:
                for b in comp:
                    if (parent, a, b) in edges:
                        examples = sorted(edges[(parent, a, b)])
                        print(f"    {a} -> {b}: {examples[0]}" + (f" (+{len(examples) - 1} more)" if len(examples) > 1 else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
