"""List the product code's functions over 60 lines; fail when one is over 80.

A function that no longer fits on a screen reads better as named steps. Run by
``./scripts/test``; migrations are left out (they are a record, not code to read).

    python scripts/long_functions.py [--limit 80] [--aim 60] [PATH ...]
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PRODUCT = ("hub", "channels", "routing", "storage")


def functions(path: Path) -> Iterator[tuple[int, str, int]]:
    """(length in lines, qualified name, first line) of every function in one file."""
    tree = ast.parse(path.read_text("utf-8"), str(path))

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[int, str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                assert child.end_lineno is not None
                # Decorators belong to the function; its docstring counts too.
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                yield child.end_lineno - first + 1, prefix + child.name, child.lineno
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")

    yield from walk(tree, "")


def sources(roots: list[Path]) -> Iterator[Path]:
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        yield from (f for f in files if "migrations" not in f.parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[Path(p) for p in PRODUCT])
    parser.add_argument("--limit", type=int, default=80, help="fail above this (default 80)")
    parser.add_argument("--aim", type=int, default=60, help="list above this (default 60)")
    args = parser.parse_args(argv)
    found = [
        (length, f"{path}:{line} {name}")
        for path in sources(args.paths)
        for length, name, line in functions(path)
        if length > args.aim
    ]
    over = 0
    for length, where in sorted(found, reverse=True):
        mark = "TOO LONG" if length > args.limit else "long"
        over += length > args.limit
        print(f"{length:4d} lines  {mark:8s}  {where}")
    print(f"{len(found)} functions over {args.aim} lines, {over} over {args.limit}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
