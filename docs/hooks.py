"""MkDocs hook: expand ``<!-- flowsamp-api: flowsamp.PKG -->`` into one mkdocstrings entry per export.

A package's public names are its ``__all__``. Each name is documented at the module it is
imported from (read from the ``from ... import ...`` lines of the package's ``__init__.py`` with
``ast``, nothing imported), because many constructors share their module's name
(``fs.kernels.mala`` the kernel, ``flowsamp/kernels/mala.py`` the module): documented through the
package, static analysis would see the submodule. A name added to ``__all__`` appears in the docs
with no edit here; ``tests/test_docs.py`` checks that every exported name has an entry.
"""

from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- flowsamp-api: ([\w.]+) -->")


def exports(package: str) -> list[tuple[str, str]]:
    """``[(name, fully qualified path to document), ...]`` for ``package.__all__``, in order."""
    rel = pathlib.Path(*package.split("."))
    init = ROOT / rel / "__init__.py"
    tree = ast.parse(init.read_text())
    sources: dict[str, str] = {}
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sources[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            names = list(ast.literal_eval(node.value))
    return [(name, sources.get(name, f"{package}.{name}")) for name in names]


def is_module(path: str) -> bool:
    rel = pathlib.Path(*path.split("."))
    return (ROOT / rel).is_dir() or (ROOT / rel).with_suffix(".py").is_file()


def render(package: str) -> str:
    top = package == "flowsamp"
    lines = [f"::: {package}", "    options:", "      members: false", "      show_root_heading: false", ""]
    for name, path in exports(package):
        if top and is_module(path):
            continue  # subpackages have their own pages
        lines += [f"::: {path}", "    options:", "      show_if_no_docstring: true", ""]
    return "\n".join(lines)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return MARKER.sub(lambda m: render(m.group(1)), markdown)
