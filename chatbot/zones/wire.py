"""What travels through the broker: a zone request and a Result, as plain data only.

A request names the command and carries the user's argument text, never a parsed
object, a code reference or a credential: the worker parses it again with its own
rules. Target lists travel as device names, which the worker looks up in its own
inventory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypeGuard

from chatbot.results import Note, Part, Result, Status, Table, TextBlock

TASK_NAME = "netbot.zone.run"


def queue_of(zone: str) -> str:
    return f"zone.{zone}"


class WireError(ValueError):
    """Data that does not have the shape of a request or a result."""


@dataclass(frozen=True)
class ZoneRequest:
    command: str  # the command's name, looked up in the worker's own registry
    raw_args: dict[str, str]  # argument text as the user wrote it, Targets parameters excepted
    targets: dict[str, list[str]]  # Targets parameters: the devices of this request
    devices: list[str]  # every device this request may touch, all in `zone`
    zone: str
    job: str  # for the worker's log: which job of the bot this belongs to
    deadline: float  # time.time() after which the work is worthless
    background: bool = False  # monitoring's share of the sessions

    def to_data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: object) -> ZoneRequest:
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            raise WireError("not a zone request")
        request = cls(**data)
        if not (isinstance(request.command, str) and isinstance(request.zone, str) and isinstance(request.job, str)
                and _str_dict(request.raw_args)
                and isinstance(request.targets, dict)
                and all(isinstance(k, str) and _str_list(v) for k, v in request.targets.items())
                and _str_list(request.devices)
                and isinstance(request.deadline, int | float) and isinstance(request.background, bool)):
            raise WireError("a zone request with fields of the wrong type")
        return request


def _str_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _str_dict(value: object) -> TypeGuard[dict[str, str]]:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def result_to_data(result: Result) -> dict[str, Any]:
    return {"status": result.status.value, "summary": result.summary,
            "parts": [_part_to_data(p) for p in result.parts], "devices": dict(result.devices)}


def _part_to_data(part: Part) -> dict[str, Any]:
    if isinstance(part, Table):
        return {"kind": "table", "columns": part.columns, "rows": part.rows, "title": part.title}
    if isinstance(part, TextBlock):
        return {"kind": "text", "text": part.text, "title": part.title, "filename": part.filename}
    return {"kind": "note", "text": part.text}


def result_from_data(data: object) -> Result:
    """A Result from a worker's answer, every field checked: a renderer must never meet
    a value of a type it does not expect."""
    if not isinstance(data, dict):
        raise WireError("not a result")
    try:
        status = Status(data["status"])
        summary, parts, devices = data["summary"], data["parts"], data["devices"]
    except (KeyError, ValueError):
        raise WireError("a result without a valid status, summary, parts or devices") from None
    if not isinstance(summary, str) or not _str_dict(devices) or not isinstance(parts, list):
        raise WireError("a result with fields of the wrong type")
    return Result(status, summary, [_part_from_data(p) for p in parts], dict(devices))


def _part_from_data(data: object) -> Part:
    if not isinstance(data, dict):
        raise WireError("a result part that is not an object")
    kind = data.get("kind")
    title = data.get("title")
    if title is not None and not isinstance(title, str):
        raise WireError("a part title that is not text")
    if kind == "table":
        columns, rows = data.get("columns"), data.get("rows")
        if not _str_list(columns) or not isinstance(rows, list) or not all(_str_list(r) for r in rows):
            raise WireError("a table that is not lists of text")
        return Table(list(columns), [list(r) for r in rows], title)
    if kind == "text":
        text, filename = data.get("text"), data.get("filename")
        if not isinstance(text, str) or not (filename is None or isinstance(filename, str)):
            raise WireError("a text block that is not text")
        return TextBlock(text, title, filename)
    if kind == "note" and isinstance(data.get("text"), str):
        return Note(data["text"])
    raise WireError(f"an unknown result part {str(kind)[:20]!r}")
