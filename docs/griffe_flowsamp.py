"""Griffe extension for flowsamp's reference docs (loaded by ``mkdocs.yml``).

Two things static analysis does not see the way a reader should:

* Kernel constructors are wrapped after their definition, ``mala = KernelAPI(mala, globals(),
  __all__)``, so the module attribute ``mala`` would be documented as a bare attribute. The
  extension keeps the function (its signature and docstring) under that name.
* Docstrings use reST roles inside numpydoc (``:math:`x```, ``.. math::`` blocks,
  ``:func:`name```). They are rewritten to Markdown: ``$x$``, ``$$ ... $$`` (rendered by MathJax
  through ``pymdownx.arithmatex``) and code spans.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc|ref|term|py:\w+):`~?([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")


def _short(target: str) -> str:
    name = target.split("<")[-1].rstrip(">").strip()  # `text <target>` form
    return "`" + name.split(".")[-1] + "`"


def rst_to_markdown(text: str) -> str:
    """Rewrite the reST bits of a numpydoc docstring as Markdown (math for arithmatex)."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(".. math::"):
            indent = line[: len(line) - len(stripped)]
            body = [stripped[len(".. math::"):].strip()] if stripped[len(".. math::"):].strip() else []
            i += 1
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
                body.append(lines[i].strip())
                i += 1
            while body and not body[-1]:
                body.pop()
            body = [b for b in body if b and not b.startswith(":label:")]
            out.append(indent + "$$")
            out.extend(indent + b for b in body)
            out.append(indent + "$$")
            out.append("")
            continue
        out.append(line)
        i += 1
    text = "\n".join(out)
    text = _MATH_ROLE.sub(lambda m: "$" + m.group(1) + "$", text)
    return _ROLE.sub(lambda m: _short(m.group(1)), text)


class FlowsampDocs(griffe.Extension):
    """Keep ``KernelAPI``-wrapped constructors as functions and translate reST to Markdown."""

    def __init__(self) -> None:
        self._functions: dict[str, griffe.Function] = {}

    def on_function_instance(self, *, func: griffe.Function, **kwargs: Any) -> None:
        self._functions[func.path] = func

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._restore_constructors(pkg)
        self._translate(pkg, set())

    def _restore_constructors(self, module: griffe.Module) -> None:
        for name, member in list(module.members.items()):
            if member.is_alias:
                continue
            if member.is_module:
                self._restore_constructors(member)
            elif member.is_attribute and str(member.value or "").startswith("KernelAPI("):
                func = self._functions.get(member.path)
                if func is not None:
                    module.set_member(name, func)
                    if func.docstring is not None:  # griffe moved it onto the attribute
                        func.docstring.parent = func

    def _translate(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._translate(member, seen)
