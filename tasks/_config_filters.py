"""What `show run <device> [interface X] [| include ...]` applies to a running config.

The bot applies these itself, to the config it has already redacted: a filter run on
the device would hand the redaction a config without the lines that mark a secret's
context (a `key-string` under `key chain`, a certificate block), and what remained of
the secret would go through. Patterns are RE2 (chatbot.patterns): linear time, and
only the head of a very large config is searched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chatbot.errors import ArgumentError
from chatbot.patterns import UserPattern, bounded

# IOS's output filters that make sense on a config; `count` answers a number.
FILTERS = ("include", "exclude", "begin", "section", "count")


@dataclass(frozen=True)
class LineFilter:
    kind: str  # one of FILTERS
    pattern: UserPattern

    def __str__(self) -> str:
        return f"| {self.kind} {self.pattern.text}"

    def apply(self, text: str) -> str:
        lines = bounded(text).splitlines()
        search = self.pattern.compiled.search
        if self.kind == "include":
            return "\n".join(line for line in lines if search(line))
        if self.kind == "exclude":
            return "\n".join(line for line in lines if not search(line))
        if self.kind == "count":
            return f"Number of lines which match regexp = {sum(1 for line in lines if search(line))}"
        if self.kind == "begin":
            start = next((i for i, line in enumerate(lines) if search(line)), len(lines))
            return "\n".join(lines[start:])
        return "\n".join(_sections(lines, lambda line: search(line) is not None))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _sections(lines: list[str], matches: Callable[[str], bool]) -> list[str]:
    """IOS `| section`: each matching line with the lines indented under it."""
    out: list[str] = []
    inside_indent: int | None = None
    for line in lines:
        if inside_indent is not None and line.strip() and _indent(line) > inside_indent:
            out.append(line)
            continue
        inside_indent = None
        if line.strip() and line.strip() != "!" and matches(line):
            out.append(line)
            inside_indent = _indent(line)
    return out


def interface_section(config: str, name: str) -> str:
    """The `interface <name>` block of a config; `name` may be abbreviated as on IOS
    (Gi1, gi0/0/1, Lo0). ArgumentError when the config has no such interface."""
    from netutils.interface import canonical_interface_name  # netutils is heavy; `show run` loads it

    lines = config.splitlines()
    blocks: dict[str, int] = {}
    for i, line in enumerate(lines):
        if line.startswith("interface "):
            blocks.setdefault(line.removeprefix("interface ").strip(), i)
    wanted = {name.lower(), canonical_interface_name(name).lower()}
    found = [n for n in blocks if n.lower() in wanted] or [n for n in blocks if _abbreviates(name, n)]
    if len(found) != 1:
        if found:
            raise ArgumentError(f"'{name}' is ambiguous: {', '.join(found)}")
        known = ", ".join(list(blocks)[:12]) + (", ..." if len(blocks) > 12 else "")
        raise ArgumentError(f"no interface '{name}' in the config" + (f"; there are {known}" if blocks else ""))
    start = blocks[found[0]]
    end = start + 1
    while end < len(lines) and lines[end].startswith(" "):
        end += 1
    return "\n".join(lines[start:end])


def _abbreviates(typed: str, full: str) -> bool:
    """`gi1` for GigabitEthernet1, `po10` for Port-channel10: the type abbreviated, the number exact."""
    typed_type, typed_number = _split(typed.lower())
    full_type, full_number = _split(full.lower())
    return bool(typed_type) and full_type.startswith(typed_type) and typed_number == full_number


def _split(name: str) -> tuple[str, str]:
    for i, ch in enumerate(name):
        if ch.isdigit():
            return name[:i].strip(), name[i:].strip()
    return name, ""
