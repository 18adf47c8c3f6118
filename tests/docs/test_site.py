"""The docs site, built and checked in a real browser (headless Chromium).

Builds the site with `mkdocs build --strict`, serves it on 127.0.0.1 and
visits every page: no console errors or failed requests, every image
loaded, every formula rendered by KaTeX, no internal link that answers
404, and the search box finds "MultiHeadAttention" and "beam search".
A screenshot of each page goes to build/docs-screenshots/ for review.

`scripts/test.sh` runs this file once per `make test` (it does not depend
on the Keras backend). It needs Debian's `chromium` (`make system`); a
missing browser is a failure, not a skip.
"""

import functools
import http.server
import os
import pathlib
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.docs._browser import Browser
from tests.docs._browser import find_chromium

ROOT = pathlib.Path(__file__).resolve().parents[2]
SITE = ROOT / "build" / "docs-site"
SCREENSHOTS = ROOT / "build" / "docs-screenshots"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def site():
    """Builds the site and serves it; yields the base URL."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(SITE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    assert executable, "chromium not found: run `make system`"
    browser = Browser(executable)
    yield browser
    browser.close()


def _pages():
    """Site-relative URLs of every page, from the built HTML files."""
    pages = []
    for path in sorted(SITE.rglob("*.html")):
        relative = path.relative_to(SITE).as_posix()
        if relative == "404.html":
            continue
        pages.append(relative.removesuffix("index.html"))
    return pages


_PAGE_STATE = """(() => {
  const images = [...document.images].filter(
      (i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.src);
  const math = document.querySelectorAll(".arithmatex").length;
  const rendered = document.querySelectorAll(
      ".arithmatex .katex").length;
  const errors = [...document.querySelectorAll(".katex-error")].map(
      (e) => e.textContent);
  const links = [...document.querySelectorAll("a[href]")].map(
      (a) => a.href);
  return {images, math, rendered, errors, links};
})()"""


def _problems_in(events, base):
    """Console errors, exceptions and failed requests among `events`."""
    problems = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            problems.append(f"exception: {params['exceptionDetails']}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in (
            "error",
            "assert",
        ):
            text = " ".join(str(a.get("value")) for a in params["args"])
            problems.append(f"console.{params['type']}: {text}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            problems.append(f"log: {entry['text']} {entry.get('url', '')}")
        elif method == "Network.responseReceived":
            response = params["response"]
            if response["status"] >= 400:
                problems.append(f"HTTP {response['status']}: {response['url']}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            problems.append(f"request failed: {params['errorText']}")
    return problems


@pytest.fixture(scope="module")
def visits(site, browser):
    """Visits every page once; returns {page: findings}."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    findings = {}
    for page in _pages():
        since = browser.navigate(site + page)
        # KaTeX renders on Material's document$ after the load event.
        browser.wait_for(
            "document.querySelectorAll('.arithmatex').length === "
            "document.querySelectorAll('.arithmatex .katex').length"
        )
        state = browser.evaluate(_PAGE_STATE)
        name = page.strip("/").replace("/", "_") or "index"
        browser.screenshot(SCREENSHOTS / f"{name}.png")
        state["problems"] = _problems_in(browser.events[since:], site)
        findings[page] = state
    return findings


def test_every_page_is_visited(visits):
    # Home, installation, guides and the API pages at least.
    assert "" in visits
    assert any(page.startswith("api/") for page in visits)
    assert len(visits) >= 10


def test_no_console_errors_or_failed_requests(visits):
    bad = {page: v["problems"] for page, v in visits.items() if v["problems"]}
    assert not bad


def test_every_image_loads(visits):
    bad = {page: v["images"] for page, v in visits.items() if v["images"]}
    assert not bad


def test_formulas_render(visits):
    assert sum(v["math"] for v in visits.values()) > 0, "no formula found"
    bad = {
        page: (v["math"], v["rendered"], v["errors"])
        for page, v in visits.items()
        if v["math"] != v["rendered"] or v["errors"]
    }
    assert not bad


def test_no_internal_link_is_broken(site, visits):
    targets = set()
    for v in visits.values():
        for link in v["links"]:
            if link.startswith(site):
                targets.add(urllib.parse.urldefrag(link).url)
    broken = []
    for url in sorted(targets):
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as e:
            status = e.code
        if status != 200:
            broken.append((status, url))
    assert targets
    assert not broken


@pytest.mark.parametrize(
    "query,expected",
    [("MultiHeadAttention", "multiheadattention"), ("beam search", "beam")],
)
def test_search_finds(site, browser, query, expected):
    since = browser.navigate(site)
    browser.evaluate(
        "document.querySelector('[data-md-component=search-query]')"
        ".focus()"
    )
    browser.page("Input.insertText", text=query)
    found = browser.wait_for(
        "[...document.querySelectorAll('.md-search-result__item')]"
        ".map((e) => e.textContent.toLowerCase())",
        timeout=15,
    )
    assert found, f"no search result for {query!r}"
    assert any(expected in text for text in found), found[:3]
    name = query.replace(" ", "_")
    browser.screenshot(SCREENSHOTS / f"search_{name}.png", max_height=900)
    assert not _problems_in(browser.events[since:], site)
