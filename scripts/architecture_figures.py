"""The figures that say how readable the code's structure is (the design issue's yardsticks).

    python scripts/architecture_figures.py [--root CHECKOUT] [--json PATH|-] [--compare BEFORE.json]

--json writes every figure, with a flat "headline" of the yardsticks, as JSON; run it on the old
checkout (--root, e.g. a worktree of the old commit) and pass that file to --compare on the new
one for a before → after table.

Prints, for the checkout measured (this script's, or --root's):
- the walk of one step, twice: one MLP `train_on_batch` (Input 20 → Dense 16 relu → Dense 3 softmax,
  SGD, NumPy) as compiled by default, in steady state (the 6th call: the program has recorded and
  checked its list of calls, and replays it), and one eager step (`jit_compile=False`, the second
  call, so nothing is being built) — how many files under xpnet/ each enters and how many times
  consecutive Python calls switch from one such file to another (`sys.setprofile`). JSON: "walk" is
  the default steady state (in a JSON file from an older script: the second call), "walk_eager" the
  eager one;
- cyclomatic complexity (radon, when installed) of `fit`, of every `predict`, and the worst library
  function outside the applications (cli, search, plots);
- the largest library file, the modules of more than 10 lines directly under xpnet/;
- import circles among xpnet modules, counting imports under TYPE_CHECKING and inside functions;
- how many library files name each fast path, and how many banner comments (`# ----`) there are.
"""

from __future__ import annotations

import argparse
import ast
import functools
import itertools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "xpnet"  # the package measured: this checkout's, or --root's
APPS = {"cli.py", "search.py", "plots.py"}  # xpnet/apps/, and their old-path aliases

# Each fast path and the identifiers that only code knowing about it would use.
FAST_PATHS = {
    "in-place SGD sink": r"InPlaceSGD|inplace_sgd|grads_via_sink|updates_in_backprop|SINK_ONLY",
    "relu after max pool": r"relu_after|ReluAfterMaxPool|activation_deferred|RELU_AFTER_POOL|_relu_pairs",
    "NaN check by output": r"carries_nan|KEEP_NAN|nan_check",
    "transposed small-batch inference": (
        r"inference_program|inference_affine|inference_route|predict_program|affine_chain"
    ),
}


def library_files() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


# JSON key: (what it is, compile's jit_compile or None for its default, calls before the one walked)
WALKS = {
    "walk": ("one step as compiled by default, in steady state", None, 5),
    "walk_eager": ("one eager step", False, 1),
}


def walk_of_one_step(what: str, jit_compile: bool | None, calls_before: int) -> dict[str, Any]:
    """The files one `train_on_batch` enters and its switches between them, after `calls_before` calls
    (jit_compile: compile's argument, None for its default)."""
    import xpnet
    from xpnet import Dense, Input, Sequential

    if Path(xpnet.__file__).resolve().parent != PKG.resolve():
        raise RuntimeError(f"walking the step of {xpnet.__file__}, not of {PKG}: is another xpnet first on sys.path?")

    model = Sequential([Input((20,)), Dense(16, activation="relu"), Dense(3, activation="softmax")])
    how = {} if jit_compile is None else {"jit_compile": jit_compile}
    try:
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy", **how)
    except TypeError:  # a checkout from before jit_compile, whose steps were all eager
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 20)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    for _ in range(calls_before):
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
    return {
        "what": what,
        "files": sorted(set(trail)),
        "files_entered": len(set(trail)),
        "switches": switches,
        "calls": len(trail),
    }


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


def module_name(path: Path, pkg: Path | None = None) -> str:
    """xpnet/io/saving.py -> "xpnet.io.saving"; a package's __init__.py -> the package."""
    parts = path.relative_to((pkg or PKG).parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(path: Path, me: str, modules: set[str]) -> list[tuple[str, bool]]:
    """(module, runs) for each import statement's targets in `path`, at any depth (inside functions
    too); runs is False under `if TYPE_CHECKING:`, whose imports only the type checker follows."""
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, runs: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                visit(ast.Module(body=child.body, type_ignores=[]), False)
                visit(ast.Module(body=child.orelse, type_ignores=[]), runs)
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, runs) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                found.append((base, runs))
                found.extend((f"{base}.{a.name}", runs) for a in child.names if f"{base}.{a.name}" in modules)
            visit(child, runs)

    visit(ast.parse(path.read_text()), True)
    return found


def import_graph(pkg: Path | None = None, type_checking: bool = True) -> dict[str, set[str]]:
    """module -> the xpnet modules it imports: at module level and inside functions, and (with
    type_checking) under `if TYPE_CHECKING:` too, since a type-only import is still a dependency of
    the design. An import that runs also runs the __init__ of each package on the way (importing
    a.b.c runs a.b), unless the importer is inside that package (then its __init__ is running).
    The top package and the packages the importer is inside of are left out: they are initialising."""
    pkg = pkg or PKG
    files = sorted(p for p in pkg.rglob("*.py") if "__pycache__" not in p.parts)
    modules = {module_name(p, pkg) for p in files}
    top = pkg.name
    graph: dict[str, set[str]] = {}
    for path in files:
        me = module_name(path, pkg)
        edges: set[str] = set()
        for target, runs in _imported(path, me, modules):
            if target not in modules or me.startswith(target + ".") or not (runs or type_checking):
                continue
            edges.add(target)
            parts = target.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if runs and parent in modules and not me.startswith(parent + ".") and me != parent:
                    edges.add(parent)
        graph[me] = edges - {me, top}
    return graph


def import_circles() -> list[list[str]]:
    """Strongly connected groups of xpnet modules, every import counted (TYPE_CHECKING, in functions)."""
    return strongly_connected(import_graph())


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of two or more modules that import one another, directly or round a circle (Tarjan)."""
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


BANNER = re.compile(r"^\s*#\s*[-=]{4,}", re.M)  # `# ----- section -----`, `# =====`


def banners() -> int:
    return sum(len(BANNER.findall(p.read_text())) for p in library_files())


def headline(figures: dict[str, Any]) -> dict[str, Any]:
    """The issue's yardsticks as flat name -> number (or file) pairs, the same keys on every checkout."""
    walk, eager, cx, fm = figures["walk"], figures["walk_eager"], figures["complexity"], figures["files"]
    out: dict[str, Any] = {
        "step: files entered": walk["files_entered"],
        "step: switches between files": walk["switches"],
        "eager step: files entered": eager["files_entered"],
        "eager step: switches between files": eager["switches"],
    }
    if "skipped" not in cx:
        out["complexity: fit (worst)"] = cx["fit"][0][0] if cx["fit"] else None
        out["complexity: predict (worst)"] = cx["predict"][0][0] if cx["predict"] else None
        out["complexity: worst library function"] = cx["worst_library_function"][0]
        out["functions above complexity 20"] = cx["functions_over_20"]
    out["largest library file (lines)"] = fm["largest_file"][1]
    out["modules over 10 lines directly under xpnet/"] = fm["top_level_modules_over_10_lines"]
    out["import circles"] = len(figures["import_circles"])
    out.update({f"files naming: {name}": len(files) for name, files in figures["fast_paths"].items()})
    out["banner comments"] = figures["banners"]
    return out


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """One line per yardstick: name, before, after (a figure missing on one side shows as —)."""
    keys = list(dict.fromkeys([*before, *after]))
    width = max((len(k) for k in keys), default=0)
    return [f"{k.ljust(width)}  {before.get(k, '—')!s:>8} → {after.get(k, '—')!s}" for k in keys]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="also write the figures as JSON ('-': print only the JSON, to stdout)")
    ap.add_argument("--compare", metavar="BEFORE.json", help="print each yardstick before (from --json) and now")
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure (default: this script's)")
    args = ap.parse_args()
    global PKG
    PKG = args.root.resolve() / "xpnet"
    if not (PKG / "__init__.py").is_file():
        ap.error(f"--root: {args.root} is not an xpnet checkout (no xpnet/__init__.py)")
    sys.path.insert(0, str(PKG.parent))  # the step is walked with that checkout's xpnet
    before = None
    if args.compare:
        try:
            before = json.loads(Path(args.compare).read_text())["headline"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            ap.error(f"--compare: {args.compare} is not a JSON file written by --json ({e})")
    sections: dict[str, Callable[[], Any]] = {
        "walk": functools.partial(walk_of_one_step, *WALKS["walk"]),
        "walk_eager": functools.partial(walk_of_one_step, *WALKS["walk_eager"]),
        "complexity": complexity,
        "files": files_and_modules,
        "import_circles": import_circles,
        "fast_paths": fast_path_files,
        "banners": banners,
    }
    figures = {name: fn() for name, fn in sections.items()}
    figures["headline"] = headline(figures)
    text = json.dumps(figures, indent=1, default=str)
    if args.json == "-":
        print(text)
        return 0
    if before is not None:
        print("\n".join(compare(before, figures["headline"])))
    else:
        _print_figures(figures)
    if args.json:
        tmp = Path(args.json).with_name(Path(args.json).name + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.json)
    return 0


def _print_figures(figures: dict[str, Any]) -> None:
    for key, (label, _, _) in WALKS.items():
        walk = figures[key]
        print(f"{label} (MLP train_on_batch): {walk['files_entered']} files entered, {walk['switches']} switches")
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


if __name__ == "__main__":
    raise SystemExit(main())
