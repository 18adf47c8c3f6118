"""Every example in a public docstring runs, on the test process's backend.

The examples are collected from the docstrings of the public modules, their
public names (the ones the API pages document) and those names' public
methods. Two forms are collected:

- fenced ```python blocks: executed as a script in a fresh namespace, so
  the example must carry its own imports;
- `>>>` doctest lines: run with `doctest`, their printed outputs compared.

The suite runs once per backend, so every example runs on JAX, TensorFlow
and PyTorch.
"""

import doctest
import inspect
import re
import textwrap

import pytest

from tests.docs.test_api_pages import _public_modules
from tests.docs.test_api_pages import _public_names

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?:python|py)[ \t]*\n(?P<code>.*?)^(?P=indent)```",
    re.MULTILINE | re.DOTALL,
)


def _documented_objects():
    """`(qualified name, object)` for each public docstring, once each."""
    import importlib

    seen = set()
    for module_name in _public_modules():
        module = importlib.import_module(module_name)
        candidates = [(module_name, module)]
        for name in _public_names(module):
            value = getattr(module, name)
            candidates.append((f"{module_name}.{name}", value))
            if inspect.isclass(value):
                for attr, member in vars(value).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if isinstance(member, property):
                        member = member.fget
                    if inspect.isfunction(member):
                        candidates.append(
                            (f"{module_name}.{name}.{attr}", member)
                        )
        for qualname, value in candidates:
            if id(value) in seen or not inspect.getdoc(value):
                continue
            if not isinstance(value, type(module)) and not inspect.isclass(
                value
            ):
                if not callable(value):
                    continue
            seen.add(id(value))
            yield qualname, value


def _fenced_blocks(docstring):
    return [
        textwrap.dedent(match["code"]) for match in FENCE.finditer(docstring)
    ]


def _collect():
    cases = []
    parser = doctest.DocTestParser()
    for qualname, value in _documented_objects():
        docstring = inspect.getdoc(value)
        for i, code in enumerate(_fenced_blocks(docstring)):
            cases.append(pytest.param("fenced", code, id=f"{qualname}[{i}]"))
        # `>>>` lines outside fenced blocks.
        outside = FENCE.sub("", docstring)
        if parser.get_examples(outside):
            cases.append(
                pytest.param("doctest", outside, id=f"{qualname}[doctest]")
            )
    return cases


CASES = _collect()


def test_examples_are_collected():
    # The collector itself: it finds the known examples of both forms.
    ids = {case.id for case in CASES}
    assert len(CASES) >= 10
    assert any(i.startswith("keras_attn.generation.greedy_search") for i in ids)


def test_fenced_blocks_are_found_at_any_indentation():
    doc = (
        "Text.\n\n    ```python\n    x = 1\n    ```\n\n"
        "```python\ny = 2\n```\n"
    )
    assert _fenced_blocks(doc) == ["x = 1\n", "y = 2\n"]


class _ShapeTolerantChecker(doctest.OutputChecker):
    """Compares outputs, reading a torch.Size as the tuple it equals."""

    def check_output(self, want, got, optionflags):
        got = re.sub(
            r"torch\.Size\(\[(.*?)\]\)",
            lambda m: "(" + m[1] + ("," if "," not in m[1] else "") + ")",
            got,
        )
        return super().check_output(want, got, optionflags)


@pytest.mark.parametrize("kind,source", CASES)
def test_docstring_example_runs(kind, source):
    namespace = {"__name__": "__docstring_example__"}
    if kind == "fenced":
        exec(compile(source, "<docstring example>", "exec"), namespace)
        return
    test = doctest.DocTestParser().get_doctest(
        source, namespace, "docstring", "<docstring>", 0
    )
    runner = doctest.DocTestRunner(
        checker=_ShapeTolerantChecker(),
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    report = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
