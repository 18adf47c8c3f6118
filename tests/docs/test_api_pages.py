"""Every public name of keras-attn is on an API page, under its public path.

An API page documents an object with a mkdocstrings directive
`::: keras_attn.<module>.<name>`; this test collects those directives from
the Markdown under docs/ and compares them with the public names of each
public module (its `__all__`, or else the functions, classes and constants
it defines without a leading underscore).
"""

import importlib
import inspect
import pathlib
import pkgutil
import re
import types

import keras_attn

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# The modules whose names make the public API; any public top-level module
# added later (e.g. keras_attn.losses) joins through `_public_modules`.
MODULES = (
    "keras_attn.layers",
    "keras_attn.ops",
    "keras_attn.models",
    "keras_attn.generation",
    "keras_attn.plot",
    "keras_attn.interpret",
)
DIRECTIVE = re.compile(r"^:::\s+(\S+)\s*$", re.MULTILINE)


def _public_modules():
    found = set(MODULES)
    for info in pkgutil.iter_modules(keras_attn.__path__):
        if not info.name.startswith("_"):
            found.add(f"keras_attn.{info.name}")
    return sorted(found)


def _public_names(module):
    if hasattr(module, "__all__"):
        names = list(module.__all__)
    else:
        names = [n for n in vars(module) if not n.startswith("_")]
    public = []
    for name in names:
        value = getattr(module, name)
        if isinstance(value, types.ModuleType):
            continue  # Submodules: their names are re-exported.
        defined_in = getattr(value, "__module__", None)
        if (inspect.isfunction(value) or inspect.isclass(value)) and not (
            defined_in or ""
        ).startswith("keras_attn"):
            continue  # Imported from elsewhere.
        if not (inspect.isfunction(value) or inspect.isclass(value)):
            if not name.isupper():
                continue  # Only constants (UPPER_CASE) among plain values.
        public.append(name)
    return public


def _documented():
    found = set()
    for page in DOCS.rglob("*.md"):
        found.update(DIRECTIVE.findall(page.read_text()))
    return found


def test_every_public_name_is_documented_under_its_public_path():
    documented = _documented()
    missing = []
    for module_name in _public_modules():
        module = importlib.import_module(module_name)
        if f"{module_name}" not in documented:
            missing.append(module_name)
        for name in _public_names(module):
            if f"{module_name}.{name}" not in documented:
                missing.append(f"{module_name}.{name}")
    assert not missing, (
        "public names without an API entry (add `::: <name>` to a page "
        f"under docs/api/): {missing}"
    )


def test_top_level_names_are_documented():
    documented = _documented()
    assert "keras_attn" in documented
    for name in keras_attn.__all__:
        value = getattr(keras_attn, name)
        if isinstance(value, types.ModuleType):
            assert value.__name__ in documented, value.__name__


def test_api_pages_use_public_paths_only():
    # A directive naming a private module path would teach a private import.
    public = set(_public_modules()) | {"keras_attn"}
    private = []
    for target in _documented():
        if not target.startswith("keras_attn"):
            continue
        parts = target.split(".")
        module = ".".join(parts[:-1]) if target not in public else target
        if target not in public and module not in public:
            private.append(target)
    assert not private, f"directives with a private path: {private}"


def test_the_check_sees_a_missing_name(tmp_path, monkeypatch):
    # The collector must fail when a page loses an entry.
    page = tmp_path / "api.md"
    page.write_text("::: keras_attn.layers.MultiHeadAttention\n")
    monkeypatch.setattr(
        "tests.docs.test_api_pages.DOCS", tmp_path, raising=True
    )
    documented = _documented()
    assert documented == {"keras_attn.layers.MultiHeadAttention"}
    assert "keras_attn.layers.TransformerEncoder" not in documented
