"""The figures that say how readable the code's structure is (the design issue's yardsticks).

    python scripts/architecture_figures.py [--json PATH]

Prints, for the checkout it runs from:
- the walk of one step: one MLP `train_on_batch` (Input 20 → Dense 16 relu → Dense 3 softmax, SGD,
  NumPy; the second call, so nothing is being built) — how many files under xpnet/ it enters and how
  many times consecutive Python calls switch from one such file to another (`sys.setprofile`);
- cyclomatic complexity (radon, when installed) of `fit`, of every `predict`, and the worst library
  function outside the applications (cli, search, plots);
- the largest library file, the modules of more than 10 lines directly under xpnet/;
- import circles among xpnet modules, counting imports under TYPE_CHECKING and inside functions;
- how many library files name each fast path, and how many banner comments (`# ----`) there are.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import xpnet  # noqa: E402

PKG = Path(xpnet.__file__).resolve().parent
APPS = {"cli.py", "search.py", "plots.py"}  # xpnet/apps/, and their old-path aliases

# Each fast path and the identifiers that only code knowing about it would use.
FAST_PATHS = {
    "in-place SGD sink": r"InPlaceSGD|inplace_sgd|grads_via_sink",
    "relu after max pool": r"relu_after|ReluAfterMaxPool|activation_deferred",
    "NaN check by output": r"carries_nan",
    "transposed small-batch inference": r"inference_program|inference_affine",
}


def library_files() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def walk_of_one_step() -> dict[str, Any]:
    from xpnet import Dense, Input, Sequential

    model = Sequential([Input((20,)), Dense(16, activation="relu"), Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 20)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    model.train_on_batch(x, y)
    trail: list[str] = []

    def profile(frame: Any, event: str, _arg: Any) -> None:
        if event == "call":
            name = frame.f_code.co_filename
            if name.startswith(str(PKG)):
                trail.append(str(Path(name).relative_to(PKG.parent)))

    sys.setprofile(profile)
    try:
        model.train_on_batch(x, y)
    finally:
        sys.setprofile(None)
    switches = sum(1 for a, b in itertools.pairwise(trail) if a != b)
    return {"files": sorted(set(trail)), "files_entered": len(set(trail)), "switches": switches, "calls": len(trail)}


def complexity() -> dict[str, Any]:
    try:
        from radon.complexity import cc_visit
    except ImportError:
        return {"skipped": "radon is not installed (pip install radon)"}
    blocks: set[tuple[int, str, str]] = set()
    for path in library_files():
        rel = str(path.relative_to(PKG.parent))
        for block in cc_visit(path.read_text()):
            items = [block, *getattr(block, "closures", [])]
            for sub in getattr(block, "methods", []):
                items.append(sub)
            for item in items:
                if getattr(item, "letter", "") == "C" and hasattr(item, "methods"):
                    continue
                owner = getattr(item, "classname", None)
                name = f"{owner}.{item.name}" if owner else item.name
                blocks.add((item.complexity, rel, name))  # radon lists a method twice
    fits = [b for b in blocks if b[2].endswith(".fit") or b[2] == "fit"]
    predicts = [b for b in blocks if b[2].endswith(".predict") or b[2] == "predict"]
    library = [b for b in blocks if Path(b[1]).name not in APPS]
    worst = max(library)
    return {
        "fit": sorted(fits, reverse=True),
        "predict": sorted(predicts, reverse=True),
        "worst_library_function": worst,
        "functions_over_20": sum(1 for b in library if b[0] > 20),
    }


def files_and_modules() -> dict[str, Any]:
    sizes = {str(p.relative_to(PKG.parent)): len(p.read_text().splitlines()) for p in library_files()}
    largest = max(sizes.items(), key=lambda kv: kv[1])
    top = sorted(name for name, n in sizes.items() if Path(name).parent == Path("xpnet") and n > 10)
    return {"largest_file": largest, "top_level_modules_over_10_lines": len(top), "top_level": top}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_circles() -> list[list[str]]:
    """Strongly connected groups of xpnet modules, every import counted (TYPE_CHECKING, in functions)."""
    files = library_files()
    modules = {_module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        me = _module_name(path)
        package = me if path.name == "__init__.py" else me.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules)
        # A package's __init__ re-exporting its own modules is not a circle of design.
        graph[me] = {t for t in found if t in modules and t != me and not me.startswith(t + ".") and t != "xpnet"}
    return _strongly_connected(graph)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def fast_path_files() -> dict[str, list[str]]:
    out = {}
    texts = {str(p.relative_to(PKG.parent)): p.read_text() for p in library_files()}
    for name, pattern in FAST_PATHS.items():
        out[name] = sorted(f for f, t in texts.items() if re.search(pattern, t))
    return out


def banners() -> int:
    return sum(len(re.findall(r"^\s*# ?-{4,}", p.read_text(), re.M)) for p in library_files())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="also write the figures as JSON")
    args = ap.parse_args()
    sections: dict[str, Callable[[], Any]] = {
        "walk": walk_of_one_step,
        "complexity": complexity,
        "files": files_and_modules,
        "import_circles": import_circles,
        "fast_paths": fast_path_files,
        "banners": banners,
    }
    figures = {name: fn() for name, fn in sections.items()}
    walk = figures["walk"]
    print(f"one MLP train_on_batch: {walk['files_entered']} files entered, {walk['switches']} switches between files")
    cx = figures["complexity"]
    if "skipped" in cx:
        print(f"complexity: {cx['skipped']}")
    else:
        for label in ("fit", "predict"):
            print(f"complexity of {label}: " + ", ".join(f"{n} ({f}:{q})" for n, f, q in cx[label]))
        n, f, q = cx["worst_library_function"]
        print(f"worst library function (apps aside): {q} in {f}, complexity {n}; {cx['functions_over_20']} above 20")
    fm = figures["files"]
    print(f"largest library file: {fm['largest_file'][0]} ({fm['largest_file'][1]} lines)")
    print(f"modules of more than 10 lines directly under xpnet/: {fm['top_level_modules_over_10_lines']}")
    circles = figures["import_circles"]
    print(f"import circles (every import counted): {len(circles)}")
    for group in circles:
        print("  " + " ↔ ".join(group))
    for name, files in figures["fast_paths"].items():
        print(f"files naming '{name}': {len(files)}")
    print(f"banner comments: {figures['banners']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
