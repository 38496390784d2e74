"""Rendering results as plain text: the console's format, and the fallback body that
rich chat formats (Matrix HTML, Markdown) carry alongside their markup."""

from __future__ import annotations

import html
from dataclasses import dataclass

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


def render_html(result: Result) -> str:
    """HTML for clients that show it (Matrix formatted_body): tables and device output
    as preformatted text, which every client aligns the same way."""
    head = html.escape(STATUS_MARK[result.status] + result.summary)
    out = [f"<strong>{head}</strong>" if result.status not in (Status.OK,) else head]
    for part in result.parts:
        if isinstance(part, Note):
            out.append(f"<p>{html.escape(part.text)}</p>")
        else:
            title = part.title if isinstance(part, TextBlock) else None
            body = part.text.rstrip("\n") if isinstance(part, TextBlock) else "\n".join(table_lines(part))
            if title:
                out.append(f"<p><em>{html.escape(title)}</em></p>")
            out.append(f"<pre><code>{html.escape(body)}</code></pre>")
    return "\n".join(out)


@dataclass(frozen=True)
class Attachment:
    filename: str
    text: str
    title: str


def split_attachments(result: Result, max_lines: int) -> tuple[Result, list[Attachment]]:
    """Long text blocks that name a file go out as attachments; the message keeps a
    one-line pointer to each, so the chat stays readable."""
    kept: list[Part] = []
    files: list[Attachment] = []
    for part in result.parts:
        if isinstance(part, TextBlock) and part.filename and part.text.count("\n") + 1 > max_lines:
            lines = part.text.count("\n") + 1
            files.append(Attachment(part.filename, part.text, part.title or part.filename))
            kept.append(Note(f"{part.title or part.filename}: {lines} lines, attached as {part.filename}"))
        else:
            kept.append(part)
    return Result(result.status, result.summary, kept, result.devices), files
