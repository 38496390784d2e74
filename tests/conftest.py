import sys
from pathlib import Path

# tests/helpers.py is imported as `helpers`
sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def lab():  # type: ignore[no-untyped-def]
    """A lab for the whole session: r1-r3 (core) and r4-r13 (edge, branch1), real SSH on loopback."""
    from chatbot.lab import LabThread

    with LabThread(devices=13, delay=0.01, slow_delay=1.0, token_timeout=600) as running:
        yield running


@pytest.fixture()
def lab_bot(lab):  # type: ignore[no-untyped-def]
    """A fresh bot on the shared lab, with short timeouts so fault tests stay quick; faults
    injected by a test are cleared afterwards."""
    from chatbot.app import build_bot
    from chatbot.cli import lab_access
    from chatbot.config import parse_config

    config = parse_config({"limits": {"device_timeout": 3, "connect_timeout": 3, "command_timeout": 30}})
    bot = build_bot(config, lab_access(lab))
    yield bot
    for name in list(lab.devices) + ["apic1"]:
        lab.set_fault(name, None)
