"""The chat platforms that `chatbot run` and `chatbot check` loop over.

A row maps a config section (`[matrix]`) to its adapter module, which is imported only
when that section is configured, since each one pulls in its own SDK. To add a platform,
write `adapters/<name>.py`: a config loader that raises ConfigError, and an adapter
class that follows `chatbot.adapter.Adapter` and takes messages through
`chatbot.inbox.Inbox`. Put its renderer in `chatbot/render.py` and its probe in
`adapters/reachability.py`, add its section to `chatbot/config.py`, and add a row here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.bridges import BridgeResolver
    from chatbot.adapter import Adapter
    from chatbot.bot import Bot
    from chatbot.config import Config
    from chatbot.state import ChatState


@dataclass(frozen=True)
class Platform:
    name: str  # the config section, and the prefix of the platform's identities
    module: str
    adapter_class: str
    config_loader: str
    read_secrets: Callable[[Any], object]  # resolves the settings' secrets now; a missing one raises UserError
    probe: str  # the function of adapters.reachability that checks the server and the token

    def _attribute(self, name: str) -> Any:
        return getattr(importlib.import_module(self.module), name)

    def raw_config(self, config: Config) -> dict[str, Any] | None:
        section: dict[str, Any] | None = getattr(config, self.name)
        return section

    def load_config(self, config: Config) -> Any:
        """The platform's settings, validated (ConfigError names the bad one)."""
        return self._attribute(self.config_loader)(self.raw_config(config) or {})

    def adapter(self, bot: Bot, settings: Any, state: ChatState, bridges: BridgeResolver) -> Adapter:
        adapter: Adapter = self._attribute(self.adapter_class)(bot, settings, state, bridges)
        return adapter

    def problem(self, settings: Any) -> str | None:
        """One line when the server cannot be reached or refuses the bot, else None."""
        from adapters import reachability

        line: str | None = getattr(reachability, self.probe)(settings)
        return line


PLATFORMS: tuple[Platform, ...] = (
    Platform("matrix", "adapters.matrix", "MatrixAdapter", "load_matrix_config",
             lambda cfg: cfg.secret("password"), "matrix_problem"),
    Platform("mattermost", "adapters.mattermost", "MattermostAdapter", "load_mattermost_config",
             lambda cfg: None, "mattermost_problem"),  # the token is read by the probe
    Platform("slack", "adapters.slack", "SlackAdapter", "load_slack_config",
             lambda cfg: cfg.tokens(), "slack_problem"),  # both tokens, and their kinds
)
BY_NAME = {p.name: p for p in PLATFORMS}


def configured(config: Config) -> list[Platform]:
    """The platforms with a section in `config`, in the table's order."""
    return [p for p in PLATFORMS if p.raw_config(config) is not None]


def section_names() -> str:
    """'[matrix], [mattermost] or [slack]', for messages."""
    names = [f"[{p.name}]" for p in PLATFORMS]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
