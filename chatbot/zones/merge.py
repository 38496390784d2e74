"""One Result from the pieces of a command that ran in several places (the bot's own
process and zones' workers): one row per device, in the order the user's targets gave,
and a summary in the words of a single run ("show version on 40 devices: 38 ok, ...").

A piece either answered (its Result) or did not (a line that stands for each of its
devices: "zone dc2: no worker answering"). Failures shared by many devices are named
once with the devices they hit.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatbot.results import Note, Part, Result, Status, Table

SUMMARY_FAILURES = 5  # failure lines a summary names; any further ones follow as notes
NAMES_PER_LINE = 3


@dataclass(frozen=True)
class Piece:
    devices: list[str]
    result: Result | None = None
    failure: str | None = None  # the piece never answered: why, for each of its devices


def failure_of(result: Result) -> str | None:
    """The line that stands for every device of a piece whose answer is a refusal or a bug."""
    if result.status in (Status.INVALID, Status.DENIED, Status.ERROR):
        return result.summary
    return None


def outcomes(piece: Piece) -> dict[str, str]:
    """Per device of the piece, "ok" or its failure line."""
    failure = piece.failure if piece.result is None else failure_of(piece.result)
    if failure is not None or piece.result is None:
        return dict.fromkeys(piece.devices, failure or "no answer")
    result = piece.result
    fallback = "ok" if result.ok else result.summary
    return {d: result.devices.get(d, fallback) for d in piece.devices}


def merge(what: str, order: list[str], pieces: list[Piece]) -> Result:
    if len(pieces) == 1 and pieces[0].result is not None and failure_of(pieces[0].result) is None:
        return pieces[0].result  # it ran in one place: its own words
    position = {d: i for i, d in enumerate(order)}
    devices: dict[str, str] = {}
    for piece in pieces:
        devices.update(outcomes(piece))
    devices = dict(sorted(devices.items(), key=lambda item: position.get(item[0], len(position))))
    bad = {d: e for d, e in devices.items() if e != "ok"}
    good = len(devices) - len(bad)
    status = Status.OK if not bad else Status.PARTIAL if good else Status.FAILED
    lines = _failure_lines(bad)
    if len(devices) == 1:
        [(device, error)] = devices.items()
        summary = f"{what} on {device}" + ("" if error == "ok" else f" failed: {error}")
    else:
        summary = f"{what} on {len(devices)} devices: {good} ok"
        if bad:
            summary += f", {len(bad)} failed ({'; '.join(lines[:SUMMARY_FAILURES])}" + \
                       (f"; and {len(lines) - SUMMARY_FAILURES} more" if len(lines) > SUMMARY_FAILURES else "") + ")"
    parts = _merged_parts(pieces, position, bad)
    parts += [Note(line) for line in lines[SUMMARY_FAILURES:]]
    return Result(status, summary, parts, devices)


def _failure_lines(bad: dict[str, str]) -> list[str]:
    """'r3: authentication failed', or 'dc2-r1, dc2-r2 and 18 more: zone dc2: no worker answering'."""
    by_error: dict[str, list[str]] = {}
    for device, error in bad.items():
        by_error.setdefault(error, []).append(device)
    lines = []
    for error, names in by_error.items():
        shown = ", ".join(names[:NAMES_PER_LINE])
        if len(names) > NAMES_PER_LINE:
            shown += f" and {len(names) - NAMES_PER_LINE} more"
        lines.append(f"{shown}: {error}")
    return lines


def _merged_parts(pieces: list[Piece], position: dict[str, int], bad: dict[str, str]) -> list[Part]:
    """Tables of the same shape become one (rows in target order); other parts follow in
    the pieces' order. A piece's own failure notes are left out: the merged summary and
    notes name every failure once."""
    already = {f"{d}: {e}" for d, e in bad.items()}
    parts: list[Part] = []
    tables: dict[tuple[tuple[str, ...], str | None], Table] = {}
    for piece in sorted(pieces, key=lambda p: min((position.get(d, len(position)) for d in p.devices), default=0)):
        if piece.result is None or failure_of(piece.result) is not None:
            continue
        for part in piece.result.parts:
            if isinstance(part, Table):
                shape = (tuple(part.columns), part.title)
                if shape in tables:
                    tables[shape].rows.extend(part.rows)
                    continue
                tables[shape] = Table(list(part.columns), list(part.rows), part.title)
                parts.append(tables[shape])
            elif isinstance(part, Note) and (part.text in already or part in parts):
                continue
            else:
                parts.append(part)
    for table in tables.values():
        table.rows.sort(key=lambda row: position.get(row[0], len(position)) if row else len(position))
    return parts
