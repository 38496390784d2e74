"""The fixtures the tests share (lab, lab_bot) come from chatbot.testing, the pytest plugin
the bot installs for every task author (see docs/plugins.md); this suite uses it too.

Installed, the plugin loads through its `pytest11` entry point under this same name, and
this line then does nothing; it keeps the suite working in a venv installed before the
entry point existed."""

import socket
from typing import Any

import pytest

# redis_server: the real Redis server fixtures (tests/redis_server.py).
pytest_plugins = ["chatbot.testing", "redis_server"]


@pytest.fixture()
def invalid_names_do_not_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names in the reserved .invalid domain (RFC 6761) fail as a resolver fails them,
    without asking one: the tests send nothing off loopback."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
