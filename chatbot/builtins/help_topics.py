"""help: the commands the asker may run here, one command's usage, or a family's."""

from __future__ import annotations

from chatbot.args import Param, Text
from chatbot.builtins.call import Call
from chatbot.builtins.monitor_commands import MONITOR_ADD, check_kinds_help
from chatbot.commands import Command, command
from chatbot.results import Note, Part, Result, Status, Table, invalid
from chatbot.router import MIN_ABBREVIATION, CommandRejected
from chatbot.wording import plural

# The commands anyone may run frame the list: about you first, your jobs last.
FIRST = ("help", "whoami")
LAST = ("jobs", "cancel")


@command("help", summary="the commands you may run here, or one command's usage",
         params=[Param("topic", Text("command"), optional=True, greedy=True)], examples=["help", "help ping"],
         inline=True, public=True)
async def help_command(call: Call, topic: str | None) -> Result:
    if topic:
        return _help_for(call, topic)
    prefix = call.prefix
    commands = list(call.bot.registry)
    public = {c.name: c for c in commands if c.public}
    own = [c for c in commands if not c.public and call.may_run(c)]
    first = [public[n] for n in FIRST if n in public]
    last = [public[n] for n in LAST if n in public] + [c for n, c in public.items() if n not in FIRST + LAST]
    rows = [[f"{prefix}{c.usage()}", c.summary] for c in first]
    rows += [[f"{prefix}{c.short_usage()}", c.summary] for c in own]
    rows += [[f"{prefix}{c.usage()}", c.summary] for c in last]
    note = ("Targets: a device (r1), a list (r1,r2), group:NAME, site:NAME or all. "
            f"{prefix}help <command> shows details and examples.")
    if not own:
        note = "You may not run any network command here; ask the bot's operators for access."
    return Result(Status.OK, "Commands you can run here:", [Table(["usage", "what it does"], rows), Note(note)])


def _help_for(call: Call, name: str) -> Result:
    prefix = call.prefix
    cmd = _find(call, name)
    family = [] if cmd is not None else _family(call, name)
    if family:
        return _help_for_family(call, name, family)
    if cmd is None:
        try:
            call.bot.router.match(name.split())
        except CommandRejected as err:  # "unknown command ... Did you mean ...?"
            return invalid(str(err))
    if cmd is None or not call.may_run(cmd):
        return invalid(f"no command '{name[:40]}' that you may run here; try {prefix}help")
    parts: list[Part] = [Note(f"usage: {prefix}{cmd.usage()}")]
    if cmd.details:
        parts.append(Note(cmd.details))
    if cmd.aliases:
        parts.append(Note("also written: " + ", ".join(cmd.aliases)))
    if cmd.examples:
        parts.append(Note("examples: " + "   ".join(f"{prefix}{e}" for e in cmd.examples)))
    if cmd.name == MONITOR_ADD:
        parts += check_kinds_help(call)
    return Result(Status.OK, f"{cmd.name}: {cmd.summary}", parts)


def _family(call: Call, topic: str) -> list[Command]:
    """`help monitor`: the commands whose name starts with the topic's words."""
    words = topic.lower().split()
    return [c for c in call.bot.registry if len(c.words) > len(words) and call.may_run(c)
            and all(w == full or (len(w) >= MIN_ABBREVIATION and full.startswith(w))
                    for w, full in zip(words, c.words, strict=False))]


def _help_for_family(call: Call, topic: str, family: list[Command]) -> Result:
    rows = [[f"{call.prefix}{c.usage()}", c.summary] for c in family]
    parts: list[Part] = [Table(["usage", "what it does"], rows)]
    if any(c.name == MONITOR_ADD for c in family):
        parts += check_kinds_help(call)
    parts.append(Note(f"{call.prefix}help <command> shows one command's details and examples."))
    name = " ".join(family[0].words[:len(topic.split())])
    return Result(Status.OK, f"{name}: {plural(len(family), 'command')}", parts)


def _find(call: Call, name: str) -> Command | None:
    exact = call.bot.registry.lookup(name.lower())
    if exact is not None:
        return exact
    try:
        return call.bot.router.match(name.split())[0]
    except CommandRejected:
        return None
