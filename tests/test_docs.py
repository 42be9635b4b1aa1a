"""Every Python code block in README.md and docs/**/*.md runs as written.

The blocks of one page run in order in one namespace, as a reader would type them into one
session, in a fresh temporary folder (files they write land there). New pages and blocks are
picked up automatically. A block can be marked by an HTML comment on the line just before its
opening fence (visible in the Markdown source, hidden when rendered):

- `<!-- doc-test: skip (reason) -->`: not run, e.g. program output, or code that needs a GPU;
  the reason is required and shown in the test report.
- `<!-- doc-test: slice (reason) -->`: run with `fashion_mnist.load_data()` and
  `mnist.load_data()` returning only their first SLICE_TRAIN training and SLICE_TEST test
  images, because the block as written trains for minutes on the full data. Everything else
  (the model, epochs, batch size) runs as written.

A block that needs a dataset the machine does not have skips its page with that reason.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
SLICE_TRAIN, SLICE_TEST = 6_000, 1_000  # the examples keep the first 5,000 for validation
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARK = re.compile(r"^<!--\s*doc-test:\s*(\w+)\s*(?:\((.*)\))?\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    code: str
    mark: str | None  # "skip", "slice" or None
    reason: str

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def python_blocks(page: Path) -> Iterator[Block]:
    """The ```python blocks of a Markdown page, with the doc-test mark just before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
        if fence.group(1) == "python":
            before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            mark = _MARK.match(before.strip())
            if mark is not None and mark.group(1) not in ("skip", "slice"):
                mark = None  # a misspelt mark runs the block; _bad_marks reports it
            yield Block(
                page,
                i + 1,
                "\n".join(lines[i + 1 : end]) + "\n",
                mark.group(1) if mark else None,
                (mark.group(2) or "").strip() if mark else "",
            )
        i = end + 1


def _bad_marks(page: Path) -> list[str]:
    """doc-test comments that are misspelt, lack a reason, or do not precede a python block."""
    problems = []
    lines = page.read_text(encoding="utf-8").splitlines()
    for n, text in enumerate(lines):
        if not (text.lstrip().startswith("<!--") and "doc-test" in text):
            continue
        mark = _MARK.match(text.strip())
        nxt = next((ln for ln in lines[n + 1 :] if ln.strip()), "")
        if mark is None or mark.group(1) not in ("skip", "slice") or not (mark.group(2) or "").strip():
            where = f"{page.relative_to(ROOT)}:{n + 1}"
            problems.append(f"{where}: {text.strip()!r} is not `<!-- doc-test: skip|slice (reason) -->`")
        elif nxt.strip() != "```python":
            problems.append(f"{page.relative_to(ROOT)}:{n + 1}: the doc-test mark is not just before a ```python block")
    return problems


def _sliced(module: object) -> object:
    real = module.load_data  # type: ignore[attr-defined]

    def load_data(*args: object, **kwargs: object) -> object:
        (x, y), (xt, yt) = real(*args, **kwargs)
        return (x[:SLICE_TRAIN], y[:SLICE_TRAIN]), (xt[:SLICE_TEST], yt[:SLICE_TEST])

    return load_data


PAGES_WITH_CODE = [p for p in PAGES if any(True for _ in python_blocks(p))]


def test_the_doc_test_finds_the_pages_and_their_marks() -> None:
    assert ROOT / "README.md" in PAGES_WITH_CODE
    problems = [msg for page in PAGES for msg in _bad_marks(page)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_block_runs_as_written(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from xpnet.datasets import DatasetNotFoundError, fashion_mnist, mnist

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("XPNET_BACKEND", os.environ.get("XPNET_BACKEND", "numpy"))
    namespace: dict[str, object] = {"__name__": "__doc_test__"}
    skipped = []
    for block in python_blocks(page):
        if block.mark == "skip":
            skipped.append(f"{block.where()} ({block.reason})")
            continue
        with monkeypatch.context() as m:
            if block.mark == "slice":
                m.setattr(fashion_mnist, "load_data", _sliced(fashion_mnist))
                m.setattr(mnist, "load_data", _sliced(mnist))
            try:
                exec(compile(block.code, block.where(), "exec"), namespace)  # our own docs, as a reader runs them
            except DatasetNotFoundError as e:
                pytest.skip(f"{block.where()} needs a dataset this machine lacks: {str(e).splitlines()[0]}")
            except Exception as e:
                raise AssertionError(f"{block.where()} fails as written: {type(e).__name__}: {e}") from e
    capsys.readouterr()  # the blocks' printing is not the test's output
    if skipped:
        print("not run:", "; ".join(skipped))


def test_every_public_layer_is_exported_at_the_top_level_as_the_readme_uses_them() -> None:
    import xpnet.layers

    for name in xpnet.layers.__all__:
        if name != "ParamSpec":
            assert getattr(xpnet, name) is getattr(xpnet.layers, name), name
            assert name in xpnet.__all__


def test_marks_are_read_and_a_misspelt_one_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- doc-test: skip (needs a GPU) -->\n```python\nimport cupy\n```\n\n"
        "```python\nx = 1\n```\n\n<!-- doc-test: skipp -->\n```python\ny = 2\n```\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    blocks = list(python_blocks(page))
    assert [(b.line, b.mark, b.reason, b.code) for b in blocks] == [
        (4, "skip", "needs a GPU", "import cupy\n"),
        (8, None, "", "x = 1\n"),
        (13, None, "", "y = 2\n"),
    ]
    expected = "page.md:12: '<!-- doc-test: skipp -->' is not `<!-- doc-test: skip|slice (reason) -->`"
    assert _bad_marks(page) == [expected]


def test_the_readme_functional_example_runs_as_written() -> None:
    import numpy as np

    import xpnet

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(ln for ln in text.splitlines() if ln.startswith("| functional API |"))
    code = row.split("`")[1]
    namespace: dict[str, object] = {"xpnet": xpnet}
    exec(code, namespace)
    model = namespace["model"]
    assert isinstance(model, xpnet.Model)
    assert model.predict(np.zeros((2, 784), np.float32)).shape == (2, 10)
