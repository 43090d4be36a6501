"""The design documents name only what exists: every `tt_...` dotted name in docs/interfaces.md and
docs/DESIGN.md imports and resolves, every file path they cite is in the repository, none points outside it."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("docs/interfaces.md", "docs/DESIGN.md")
DOTTED = re.compile(r"`(tt_\w+(?:\.\w+)+)`")  # `tt_pipeline.market.refresh_partitions`
PATH = re.compile(r"`(\w[\w.-]*(?:/\w[\w.-]*)+)`")  # `tt_rl/kernels.py`


def cited(pattern: re.Pattern) -> list[tuple[str, str]]:
    """(document, name) for every match of `pattern` in DOCS, in order, without repeats."""
    return list(dict.fromkeys((doc, m) for doc in DOCS for m in pattern.findall((ROOT / doc).read_text())))


def resolve(dotted: str) -> object:
    """The object `dotted` names: its longest importable module prefix, then attributes. ImportError or
    AttributeError when it does not exist (a module that fails on a missing dependency raises as it is)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # this prefix is not a module: try a shorter one
            raise
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(f"no module {parts[0]}")


def test_the_interface_list_names_the_package_contracts():
    names = [name for doc, name in cited(DOTTED) if doc == "docs/interfaces.md"]
    assert len(names) >= 30, names
    assert {name.split(".")[0] for name in names} == {
        "tt_resources",
        "tt_rl",
        "tt_pipeline",
        "tt_assets",
        "tt_cli",
    }


@pytest.mark.parametrize(("doc", "name"), cited(DOTTED), ids=lambda v: v)
def test_every_listed_name_resolves(doc, name):
    try:
        resolve(name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{doc} lists `{name}`, which no longer exists ({exc}): update the entry", pytrace=False)


@pytest.mark.parametrize(("doc", "path"), cited(PATH), ids=lambda v: v)
def test_every_cited_file_is_in_the_repository(doc, path):
    assert (ROOT / path).exists(), f"{doc} cites `{path}`, which is not in the repository: update the entry"


@pytest.mark.parametrize("doc", DOCS)
def test_no_document_points_outside_the_repository(doc):
    text = (ROOT / doc).read_text()
    outside = [line for line in text.splitlines() if "../" in line]
    assert not outside, f"{doc} points outside the repository: {outside}"


def readme_layout() -> dict[str, str]:
    """README's "Layout" block: top-level directory -> its description (continuation lines joined)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout\n```\n", 1)[1].split("```", 1)[0]
    layout: dict[str, str] = {}
    for line in block.splitlines():
        if not line.startswith(" "):
            name, _, line = line.partition("/")
            layout[name] = ""
        layout[name] += " " + line.strip()
    return layout


def test_the_readme_layout_matches_the_tree():
    """Every directory README's layout lists exists, every package is listed, and each module a package's
    description names (a snake_case word that is not an installed package, like ib_async) is one of its files."""
    layout = readme_layout()
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages - {"tests"} <= layout.keys(), "a package is missing from README's layout"
    assert all((ROOT / name).is_dir() for name in layout), "README's layout lists a directory that is gone"
    for package in packages - {"tests"}:
        words = set(re.findall(r"\b([a-z]+_[a-z_]+)\b", layout[package]))
        named = {word for word in words if importlib.util.find_spec(word) is None}
        modules = {p.stem for p in (ROOT / package).rglob("*.py")}
        assert named <= modules, f"README's layout of {package}/ names {sorted(named - modules)}"
