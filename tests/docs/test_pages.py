"""The pages of the docs: their images exist and their code runs.

- Every image a page references exists, and the guides' images are drawn
  by a script in docs/scripts/ (so `make figures` regenerates them).
- The ```python blocks of each guide and migration page run, in order, as
  one script per page, on the test process's backend (the suite runs once
  per backend). A block fenced as ```{.python .no-run} is shown but not run
  (code for a library that is not installed, such as TensorFlow Addons).
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)[^)]*\)|<img[^>]+src=\"([^\"]+)\"")
CODE = re.compile(r"^```python[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# The pages whose code is a runnable walk-through.
RUNNABLE_PAGES = sorted(
    [
        *(DOCS / "guides").glob("*.md"),
        *(DOCS / "migration").glob("*.md"),
        DOCS / "index.md",
    ]
)


def _pages():
    return sorted(p for p in DOCS.rglob("*.md"))


def _images(page):
    text = page.read_text()
    for match in IMAGE.finditer(text):
        target = match[1] or match[2]
        if "://" in target:
            yield target, None
        else:
            yield target, (page.parent / target).resolve()


def test_every_referenced_image_exists():
    missing = []
    remote = []
    for page in _pages():
        for target, path in _images(page):
            if path is None:
                remote.append((page.name, target))
            elif not path.is_file():
                missing.append((str(page.relative_to(DOCS)), target))
    assert not remote, f"images must be served from the site: {remote}"
    assert not missing


def test_guide_figures_are_drawn_by_a_script():
    # docs/scripts draws the guides' figures; an example draws its own
    # with `--figures docs/images` (the measured Transformer-vs-RNN page).
    scripts = "\n".join(
        p.read_text()
        for p in [
            *(DOCS / "scripts").glob("*.py"),
            *(DOCS.parent / "examples").glob("*.py"),
        ]
    )
    orphans = []
    for page in [*(DOCS / "guides").glob("*.md"), DOCS / "benchmarks.md"]:
        for _target, path in _images(page):
            if path is not None and path.name not in scripts:
                orphans.append((page.name, path.name))
    assert not orphans, (
        "figures without a script in docs/scripts/ or examples/ that "
        "writes them: "
        f"{orphans}"
    )


def test_the_image_check_sees_a_missing_file(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("Text ![a figure](images/none.png) more.\n")
    ((target, path),) = list(_images(page))
    assert target == "images/none.png" and not path.is_file()


def test_no_run_blocks_are_not_collected():
    text = "```python\na = 1\n```\n\n```{.python .no-run}\nb = 2\n```\n"
    assert CODE.findall(text) == ["a = 1\n"]


@pytest.mark.parametrize(
    "page",
    [p for p in RUNNABLE_PAGES if CODE.search(p.read_text())],
    ids=lambda p: str(p.relative_to(DOCS)),
)
def test_page_code_runs(page, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # Files a page writes land here.
    source = "\n".join(CODE.findall(page.read_text()))
    namespace = {"__name__": "__docs_page__"}
    exec(compile(source, str(page), "exec"), namespace)
