"""A griffe extension that renders keras-attn's Google docstrings as meant.

The library's docstrings follow the Keras conventions, which griffe's Google
parser only partly knows. Before griffe parses a docstring this extension
rewrites its text, without touching the source files:

- `Call arguments:` becomes an "Other parameters" section titled
  "Call arguments:", so it renders as a table like `Args:`.
- `Example:` / `Examples:` whose body is not indented (the Keras layout)
  gets its body indented, so griffe reads it as an examples section:
  `>>>` lines become highlighted Python console blocks, fenced blocks stay
  highlighted code.
- A leading type written in prose, `name: int, the number of ...`, becomes
  `name (int): the number of ...`, so the Type column shows it.

Loaded by mkdocstrings (see `extensions:` in mkdocs.yml).
"""

import re

import griffe

# Section titles at the docstring's own indentation (Google style).
_SECTION = re.compile(r"^(?P<title>[A-Z][A-Za-z ]*):\s*$")
_EXAMPLE_TITLES = ("Example", "Examples")
# A prose type: only these words, e.g. "int", "positive int or None",
# "tuple of one or two ints", "string or callable".
_TYPE_WORDS = {
    "bool",
    "boolean",
    "callable",
    "dict",
    "even",
    "float",
    "floats",
    "int",
    "integer",
    "ints",
    "list",
    "None",
    "number",
    "of",
    "one",
    "optional",
    "or",
    "positive",
    "scalar",
    "str",
    "string",
    "tensor",
    "tuple",
    "two",
}
_ITEM = re.compile(r"^(?P<indent>\s+)(?P<name>\*{0,2}\w+): (?P<rest>.*)$")
_PARAMETER_SECTIONS = ("Args", "Arguments", "Call arguments")


def _prose_type(text):
    """`(type, rest)` when `text` starts with a prose type and a comma."""
    head, sep, rest = text.partition(", ")
    if not sep:
        return None
    words = head.split()
    if not words or not set(words) <= _TYPE_WORDS:
        return None
    if words == ["None"] or words[0] in ("of", "or"):
        return None
    return head, rest


def _indent_of(line):
    return len(line) - len(line.lstrip(" "))


def rewrite_docstring(text):
    """Returns the docstring `text` rewritten for griffe's Google parser."""
    lines = text.split("\n")
    out = []
    i = 0
    in_fence = False
    section = None
    item_indent = None
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
            out.append(line)
            i += 1
            continue
        match = None if in_fence else _SECTION.match(line)
        if match:
            section = match["title"]
            item_indent = None
            if section == "Call arguments":
                out.append("Other parameters: Call arguments:")
                i += 1
                continue
            if section in _EXAMPLE_TITLES:
                i = _indent_example(lines, i, out)
                section = None
                continue
            out.append(line)
            i += 1
            continue
        if section in _PARAMETER_SECTIONS and not in_fence:
            item = _ITEM.match(line)
            top_level = item_indent is None or _indent_of(line) == item_indent
            if item and top_level:
                item_indent = _indent_of(line)
                typed = _prose_type(item["rest"])
                if typed is not None:
                    kind, rest = typed
                    line = f"{item['indent']}{item['name']} ({kind}): {rest}"
        out.append(line)
        i += 1
    return "\n".join(out)


def _indent_example(lines, i, out):
    """Appends the example section starting at `lines[i]`; returns the end.

    A body already indented is left as it is. A body at the docstring's
    own indentation (after a blank line) runs until the next section title
    and is indented by four spaces.
    """
    out.append("Examples:")
    j = i + 1
    while j < len(lines) and not lines[j].strip():
        j += 1
    if j < len(lines) and _indent_of(lines[j]) > 0:
        return i + 1  # Already a Google section: griffe reads it as is.
    in_fence = False
    body = []
    while j < len(lines):
        line = lines[j]
        if line.strip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and _SECTION.match(line):
            break
        body.append(line)
        j += 1
    while body and not body[-1].strip():
        body.pop()
    out.extend("    " + line if line.strip() else "" for line in body)
    out.append("")
    return j


class KerasAttnDocstrings(griffe.Extension):
    """Rewrites every docstring once, when griffe creates its object."""

    def on_instance(self, *, node, obj, agent, **kwargs):
        docstring = obj.docstring
        if docstring is not None and docstring.value:
            docstring.value = rewrite_docstring(docstring.value)
