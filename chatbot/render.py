"""Rendering results as plain text: the console's format, and the fallback body that
rich chat formats (Matrix HTML, Markdown) carry alongside their markup."""

from __future__ import annotations

from chatbot.results import Note, Part, Result, Status, Table, TextBlock

STATUS_MARK = {
    Status.OK: "",
    Status.PARTIAL: "[partial] ",
    Status.FAILED: "[failed] ",
    Status.INVALID: "[error] ",
    Status.DENIED: "[denied] ",
    Status.ERROR: "[bot error] ",
}


def table_lines(table: Table) -> list[str]:
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)).rstrip()

    out = [table.title] if table.title else []
    out += [line(table.columns), line(["-" * w for w in widths])]
    out += [line(row) for row in table.rows]
    return out


def part_lines(part: Part) -> list[str]:
    if isinstance(part, Table):
        return table_lines(part)
    if isinstance(part, TextBlock):
        head = [f"--- {part.title} ---"] if part.title else []
        return head + part.text.rstrip("\n").splitlines()
    if isinstance(part, Note):
        return [part.text]
    raise TypeError(f"unknown result part {type(part).__name__}")


def render_text(result: Result) -> str:
    lines = [STATUS_MARK[result.status] + result.summary]
    for part in result.parts:
        lines.append("")
        lines.extend(part_lines(part))
    return "\n".join(lines)
