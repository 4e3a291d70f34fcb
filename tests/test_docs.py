"""The reference docs build (``mkdocs build --strict``) and the docstring examples run (doctest).

The build needs the ``test`` extra (mkdocs, mkdocstrings[python]); it is skipped, with the reason,
only when those are not installed. ``--strict`` turns every warning (a docstring griffe cannot
parse, a broken link, a missing page) into a failure.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
API_PAGES = ["kernels", "samplers", "flows", "train", "estimators", "targets", "numpyro"]

# modules whose public docstrings carry short, cheap ``>>>`` examples
DOCTEST_MODULES = [
    "flowsamp.base",
    "flowsamp.estimators.weights",
    "flowsamp.estimators.modes",
    "flowsamp.estimators.verdict",
    "flowsamp.targets.gaussian",
    "flowsamp.kernels.rwmh",
]


def _hooks():
    spec = importlib.util.spec_from_file_location("flowsamp_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    pytest.importorskip("mkdocs", reason="the docs build needs the test extra (mkdocs)")
    pytest.importorskip("mkdocstrings", reason="the docs build needs the test extra (mkdocstrings[python])")
    pytest.importorskip("mkdocstrings_handlers.python", reason="the docs build needs mkdocstrings[python]")
    out = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_docs_build_strict(site):
    for page in ["index.html", "getting-started/index.html", "which-sampler/index.html", "api/io/index.html"]:
        assert (site / page).is_file(), f"{page} was not built"


@pytest.mark.parametrize("package", API_PAGES)
def test_every_public_name_documented(site, package):
    """Each name in the package's ``__all__`` has an entry (an anchor) on its API page."""
    html = (site / "api" / package / "index.html").read_text()
    anchors = set(re.findall(r'id="([^"]+)"', html))
    names = _hooks().exports(f"flowsamp.{package}")
    assert names, f"flowsamp.{package} has no __all__"
    missing = [n for n, path in names if path not in anchors]
    assert not missing, f"flowsamp.{package}: no docs entry for {missing}"


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module, name) if t.examples]
    assert tests, f"{name} has no docstring examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


@pytest.mark.slow
def test_getting_started_code_runs():
    """The Python blocks of docs/getting-started.md run in order (a few minutes: slow)."""
    text = (ROOT / "docs" / "getting-started.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))
    assert code, "no python blocks in getting-started.md"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
