"""The griffe extension that renders keras-attn docstrings (docs/_ext)."""

import importlib.util
import pathlib

import griffe

PATH = (
    pathlib.Path(__file__).resolve().parents[2]
    / "docs"
    / "_ext"
    / "griffe_keras_attn.py"
)
_spec = importlib.util.spec_from_file_location("griffe_keras_attn", PATH)
ext = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ext)

DOCSTRING = '''Summary.

Args:
    num_heads: int, the number of heads.
    dropout: float in `[0, 1)`, dropout.
    window: positive int or None, the window
        size, int, continued.

Call arguments:
    query: query tensor `(B, T, D)`.
    training: bool, whether dropout is active.

Returns:
    The output `(B, T, D)`; then the scores when
    given: `output` or `(output, scores)`.

Example:

>>> x = 1
>>> x + 1
2

```python
y = 2
```

References:
    - A paper.
'''


def _parse(text):
    docstring = griffe.Docstring(ext.rewrite_docstring(text))
    return docstring.parse("google", returns_multiple_items=False)


def _section(sections, kind):
    return [s for s in sections if s.kind.value == kind]


def test_call_arguments_become_a_table_with_types():
    sections = _parse(DOCSTRING)
    (call,) = _section(sections, "other parameters")
    assert call.title == "Call arguments:"
    assert [p.name for p in call.value] == ["query", "training"]
    assert str(call.value[1].annotation) == "bool"
    assert call.value[1].description == "whether dropout is active."


def test_prose_types_fill_the_type_column_only_when_plain():
    (args,) = _section(_parse(DOCSTRING), "parameters")
    types = {p.name: p.annotation for p in args.value}
    assert str(types["num_heads"]) == "int"
    assert types["dropout"] is None  # "float in `[0, 1)`" stays prose.
    assert str(types["window"]) == "positive int or None"
    # Continuation lines are not items.
    assert "size, int, continued." in args.value[2].description


def test_multiline_returns_are_one_item():
    (returns,) = _section(_parse(DOCSTRING), "returns")
    assert len(returns.value) == 1
    assert "given: `output`" in returns.value[0].description


def test_unindented_example_becomes_an_examples_section():
    (examples,) = _section(_parse(DOCSTRING), "examples")
    kinds = [kind.value for kind, _ in examples.value]
    assert "examples" in kinds  # The >>> lines: highlighted console code.
    text = "".join(v for kind, v in examples.value if kind.value == "text")
    assert "```python\ny = 2\n```" in text
    # The next section is still parsed as its own section.
    assert _section(_parse(DOCSTRING), "admonition")


def test_indented_example_sections_are_left_alone():
    text = "Summary.\n\nExamples:\n    >>> 1 + 1\n    2\n"
    assert ext.rewrite_docstring(text) == text


def test_a_return_in_backticks_stays_in_the_description():
    sections = _parse("Summary.\n\nReturns:\n    `(a, b)`: the pair.\n")
    (returns,) = _section(sections, "returns")
    (item,) = returns.value
    assert item.annotation is None
    assert item.description == "`(a, b)`: the pair."
