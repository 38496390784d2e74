"""whoami: who the bot takes the asker for, and what they may run here."""

from __future__ import annotations

from chatbot.builtins.call import Call
from chatbot.commands import command
from chatbot.results import Result, Status, Table


@command("whoami", summary="who the bot thinks you are, and what you may run here", inline=True, public=True)
async def whoami(call: Call) -> Result:
    ident, p = call.msg.sender, call.principal
    rows = [["identity", ident.user], ["account", ident.platform_id]]
    if ident.bridge:
        rows.append(["bridge", ident.bridge + (" (relayed nick: a claim, not a proof)" if ident.weak else "")])
    rows.append(["person", p.person or "(not in [identities])"])
    rows.append(["groups", ", ".join(sorted(p.groups)) or "-"])
    rows.append(["room", call.place.ref + (" (direct)" if call.place.direct else "")])
    runnable = [c.name for c in call.bot.registry if not c.public and call.may_run(c)]
    rows.append(["may run here", ", ".join(runnable) or "nothing"])
    return Result(Status.OK, f"You are {p.name}" + (f" via {ident.bridge}" if ident.bridge else ""),
                  [Table(["", ""], rows)])
