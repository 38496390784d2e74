"""Every platform's rendering of a result, in one place: plain text (the console, and
the fallback body that rich formats carry alongside their markup), HTML (Matrix),
Markdown (Mattermost) and mrkdwn (Slack). Each puts tables and device output in
preformatted blocks, which every client aligns the same way, and escapes what a user
or a device may have typed so it can neither format nor notify."""

from __future__ import annotations

import html
import re
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


# --- Mattermost Markdown --------------------------------------------------------------
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_~\[\]<>|#])")
_GROUP_MENTION = re.compile(r"@(channel|all|here)\b", re.IGNORECASE)
ZWSP = "\u200b"


def escape_markdown(text: str) -> str:
    """Prose that may echo what a user typed: no markup, and no mention. `@channel` in an
    answer would notify the whole channel, so every @ gets an invisible space after it."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("@", "@" + ZWSP)


def code_block(text: str) -> str:
    """Verbatim text in a fence longer than any run of backticks inside it, so device output
    cannot close the block early. Group mentions are defused even here: the server looks for
    them in text it does not recognise as code."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = _GROUP_MENTION.sub("@" + ZWSP + r"\1", text)
    return f"{fence}\n{body}\n{fence}"


def render_markdown(result: Result) -> str:
    """Mattermost Markdown: the summary (bold unless all went well), notes as prose, tables
    and device output in code blocks."""
    head = escape_markdown(STATUS_MARK[result.status] + result.summary)
    out = [head if result.status == Status.OK else f"**{head}**"]
    for part in result.parts:
        if isinstance(part, Note):
            out.append(escape_markdown(part.text))
        elif isinstance(part, TextBlock):
            if part.title:
                out.append(f"*{escape_markdown(part.title)}*")
            out.append(code_block(part.text.rstrip("\n")))
        elif isinstance(part, Table):
            out.append(code_block("\n".join(table_lines(part))))
    return "\n\n".join(out)


# --- Slack mrkdwn ------------------------------------------------------------------------
def escape_mrkdwn(text: str) -> str:
    """&, < and > as Slack requires everywhere (a raw < would start a link or a mention)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_mrkdwn(result: Result, prefix: str = "") -> str:
    """Slack mrkdwn: the summary (bold unless all went well), notes as lines, tables and
    device output in ``` blocks; `prefix` (who is answered) leads the summary."""
    head = escape_mrkdwn(prefix + STATUS_MARK[result.status] + result.summary)
    out = [f"*{head}*" if result.status is not Status.OK and head.strip() else head]
    for part in result.parts:
        if isinstance(part, Note):
            out.append(escape_mrkdwn(part.text))
            continue
        title = part.title if isinstance(part, TextBlock) else None
        body = part.text.rstrip("\n") if isinstance(part, TextBlock) else "\n".join(table_lines(part))
        if title:
            out.append(f"_{escape_mrkdwn(title)}_")
        out.append("```\n" + escape_mrkdwn(body).replace("```", "`\u200b``") + "\n```")
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
