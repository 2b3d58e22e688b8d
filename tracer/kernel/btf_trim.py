"""Cut bpftool's C dump of the kernel's BTF down to what a program needs.

clang spends most of a BCC compile parsing the 2-3 MB dump, and LLVM keeps that memory.
The dump is a sequence of blank-line separated top-level items, each after whatever it
needs by value. Keeping the items the roots need by value -- a member that is only a
pointer needs no definition -- in their original order gives the same layouts in a
fraction of the text. Forward declarations, enums and plain typedefs are always kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_TAGGED = re.compile(r"^(struct|union)\s+(\w+)\s*\{")
_TYPEDEF_NAME = re.compile(r"(\w+)\s*(?:\[[^\]]*\]\s*)*;\s*$")
_FUNC_TYPEDEF_NAME = re.compile(r"\(\s*\*\s*(\w+)\s*\)")
_REF = re.compile(r"\b(struct|union)\s+(\w+)\s*(\**)")
_IDENT = re.compile(r"\b[A-Za-z_]\w*\b")
_FUNC_TYPE_NAME = re.compile(r"(\w+)\s*\(")
_BUILTIN = {"typedef", "signed", "unsigned", "char", "short", "int", "long", "float", "double",
            "_Bool", "void", "const", "volatile", "__int128"}


@dataclass
class _Item:
    text: str
    name: str | None = None  # "struct x", "union x" or a typedef name; None: always kept
    always: bool = False


def _classify(block: str) -> _Item:
    first = block.lstrip().split("\n", 1)[0]
    m = _TAGGED.match(first)
    if m:
        return _Item(block, f"{m.group(1)} {m.group(2)}")
    if first.startswith("typedef"):
        if "{" in block or "(" not in first:
            name_m = _TYPEDEF_NAME.search(block.rstrip().rsplit("\n", 1)[-1])
        else:  # a function pointer type or a function type
            name_m = _FUNC_TYPEDEF_NAME.search(first) or _FUNC_TYPE_NAME.search(first)
        if not name_m:
            return _Item(block, None, always=True)
        name = name_m.group(1)
        builtin = "{" not in block and "(" not in block and set(_IDENT.findall(first)) - {name} <= _BUILTIN
        return _Item(block, name, always=builtin)
    return _Item(block, None, always=True)  # enums, forward declarations, preprocessor lines


def _value_deps(item: _Item, typedefs: set[str]) -> set[str]:
    """Names whose definitions ITEM needs: by-value struct/union members and typedefs used."""
    deps: set[str] = set()
    for line in item.text.splitlines():
        if "(" not in line:  # a function (pointer) type's struct types may stay incomplete
            deps.update(f"{kind} {tag}" for kind, tag, stars in _REF.findall(line) if not stars)
        deps.update(w for w in _IDENT.findall(line) if w in typedefs)  # names must be declared
    deps.discard(item.name)
    return deps


def trim(dump: str, roots: Iterable[str]) -> str:
    """The dump restricted to ROOTS ("struct task_struct", "u64", ...) and what they need."""
    items = [_classify(b) for b in dump.split("\n\n")]
    by_name = {it.name: it for it in items if it.name}
    typedefs = {it.name for it in items if it.name and not it.name.startswith(("struct ", "union "))}
    keep: set[str] = set()
    todo = [r for r in roots if r in by_name]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        todo.extend(d for d in _value_deps(by_name[name], typedefs) if d in by_name and d not in keep)
    # Dropped definitions stay declared, so prototypes that mention them stay quiet.
    dropped = sorted(n for n in by_name if n not in keep and n.startswith(("struct ", "union ")))
    declarations = "".join(f"{n};\n" for n in dropped)
    return declarations + "\n" + "\n\n".join(it.text for it in items if it.always or it.name in keep)


def identifiers(text: str) -> set[str]:
    """Every C identifier in TEXT."""
    return set(_IDENT.findall(text))


def roots_of(sources: Iterable[str]) -> set[str]:
    """struct/union tags and identifiers a set of C sources mentions."""
    roots: set[str] = set()
    for text in sources:
        roots.update(f"{k} {t}" for k, t, _ in _REF.findall(text))
        roots.update(identifiers(text))
    return roots
