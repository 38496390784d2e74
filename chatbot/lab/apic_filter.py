"""APIC `query-target-filter` expressions, e.g. and(eq(faultInst.severity,"major"),...).

Supported: eq, ne, lt, gt, le, ge (numeric when both sides are numbers), wcard (regex
search), and, or, not. A property is written `<class>.<attribute>`; given the queried class
and its attributes, any other class or an unknown attribute is refused, as the APIC
refuses it (HTTP 400) rather than matching nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable


class FilterError(ValueError):
    pass


class UnknownProperty(FilterError):
    """The filter names a class or an attribute the queried class does not have."""


def property_name(text: str, cls: str | None, properties: frozenset[str] | None) -> str:
    """`faultInst.severity` -> `severity`, checked against the queried class when given."""
    prefix, dot, name = text.rpartition(".")
    if cls is not None and (not dot or prefix != cls):
        raise UnknownProperty(f"{text} is not a property of class {cls}")
    if properties is not None and name not in properties:
        raise UnknownProperty(f"{text} is not a property of class {cls}")
    return name


def parse_filter(
    text: str, cls: str | None = None, properties: frozenset[str] | None = None
) -> Callable[[dict[str, str]], bool]:
    """Compile an APIC query-target-filter such as and(eq(faultInst.severity,"major"),...)."""
    position = 0

    def skip_space() -> None:
        nonlocal position
        while position < len(text) and text[position].isspace():
            position += 1

    def expect(char: str) -> None:
        nonlocal position
        skip_space()
        if position >= len(text) or text[position] != char:
            raise FilterError(f"expected {char!r} at {position}")
        position += 1

    def word() -> str:
        nonlocal position
        skip_space()
        match = re.compile(r"[A-Za-z0-9_.\-]+").match(text, position)
        if not match:
            raise FilterError(f"expected a name at {position}")
        position = match.end()
        return match.group()

    def value() -> str:
        nonlocal position
        skip_space()
        if position < len(text) and text[position] == '"':
            end = text.find('"', position + 1)
            if end < 0:
                raise FilterError("unterminated string")
            result, position = text[position + 1 : end], end + 1
            return result
        return word()

    def expression() -> Callable[[dict[str, str]], bool]:
        operator = word()
        expect("(")
        if operator in ("and", "or"):
            parts = [expression()]
            skip_space()
            while position < len(text) and text[position] == ",":
                expect(",")
                parts.append(expression())
                skip_space()
            expect(")")
            if operator == "and":
                return lambda attrs: all(part(attrs) for part in parts)
            return lambda attrs: any(part(attrs) for part in parts)
        if operator == "not":
            inner = expression()
            expect(")")
            return lambda attrs: not inner(attrs)
        prop = property_name(word(), cls, properties)
        expect(",")
        wanted = value()
        expect(")")
        return _comparison(operator, prop, wanted)

    predicate = expression()
    skip_space()
    if position != len(text):
        raise FilterError(f"trailing text at {position}")
    return predicate


def _comparison(operator: str, prop: str, wanted: str) -> Callable[[dict[str, str]], bool]:
    def ordered(actual: str) -> tuple[float | str, float | str]:
        try:
            return float(actual), float(wanted)
        except ValueError:
            return actual, wanted

    tests: dict[str, Callable[[str], bool]] = {
        "eq": lambda actual: actual == wanted,
        "ne": lambda actual: actual != wanted,
        "lt": lambda actual: ordered(actual)[0] < ordered(actual)[1],  # type: ignore[operator]
        "gt": lambda actual: ordered(actual)[0] > ordered(actual)[1],  # type: ignore[operator]
        "le": lambda actual: ordered(actual)[0] <= ordered(actual)[1],  # type: ignore[operator]
        "ge": lambda actual: ordered(actual)[0] >= ordered(actual)[1],  # type: ignore[operator]
        "wcard": lambda actual: re.search(wanted, actual) is not None,
    }
    if operator not in tests:
        raise FilterError(f"unknown operator {operator}")
    test = tests[operator]
    return lambda attrs: prop in attrs and test(attrs[prop])
