"""examples/netbot-uptime, a complete third-party plugin package, installed as a user
would install it: the bot finds its command and its check kind through the
`chatbot.tasks` entry point, and the plugin's own tests pass with chatbot.testing."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatbot.api import Status, Table
from chatbot.plugins import load_check_kinds, load_registry
from chatbot.testing import ask, make_bot

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "netbot-uptime"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example, pip-installed (offline) into a directory of its own on sys.path,
    which is all the entry-point lookup needs; nothing is added to the venv."""
    source = tmp_path_factory.mktemp("src") / EXAMPLE.name  # a build writes next to its sources
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m == "netbot_uptime" or m.startswith("netbot_uptime.")]:
            del sys.modules[name]


def test_without_the_package_the_bot_has_no_uptime() -> None:
    """What the fixture's install adds (it runs before the fixture is first used)."""
    assert load_registry().lookup("uptime") is None and "uptime" not in load_check_kinds(), \
        "netbot-uptime is installed in this environment already; uninstall it to run this suite"


def test_the_bot_finds_the_plugin_command_and_check_kind(installed_plugin: Path, lab: Any) -> None:
    bot = make_bot(lab=lab)
    assert "uptime" in bot.monitors.kinds
    help_text = ask(bot, "!help").result
    assert help_text is not None and "uptime" in str(help_text.parts)
    [kinds] = [p for p in ask(bot, "!help monitor").result.parts if isinstance(p, Table) and p.title == "check kinds"]
    assert "uptime" in [row[0] for row in kinds.rows]
    reply, result = ask(bot, "!uptime r1,r2", as_="alice")
    assert reply is not None and result is not None and result.status is Status.OK, result
    [table] = [p for p in result.parts if isinstance(p, Table)]
    assert sorted(row[0] for row in table.rows) == ["r1", "r2"]


def test_the_plugin_s_own_tests_pass(installed_plugin: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(installed_plugin), os.environ.get("PYTHONPATH", "")]))
    tests = tmp_path / "tests"  # run where nothing is written into the repository
    shutil.copytree(EXAMPLE / "tests", tests)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout


def test_the_walk_through_shows_the_example_s_own_code() -> None:
    """docs/plugins.md quotes examples/netbot-uptime verbatim, and the suite runs the
    example: every snippet a newcomer copies is known to work."""
    import re

    guide = (EXAMPLE.parent.parent / "docs" / "plugins.md").read_text()
    sources = "\n".join(p.read_text() for p in sorted(EXAMPLE.rglob("*")) if p.suffix in (".py", ".toml"))
    python = re.findall(r"```python\n(.*?)```", guide, re.S)
    toml = re.findall(r"```toml\n(.*?)```", guide, re.S)
    assert len(python) >= 5 and toml
    for snippet in python:
        assert snippet in sources, f"docs/plugins.md shows code the example does not have:\n{snippet}"
    for line in "".join(toml).splitlines():  # the toml snippet leaves out lines between its own
        assert line in sources, f"docs/plugins.md shows a line the example's pyproject does not have: {line!r}"


def test_the_example_depends_on_the_bot_by_its_distribution_name() -> None:
    """pip resolves a plugin's dependency by name: a stale name would install nothing, or
    someone else's package."""
    import tomllib

    ours = tomllib.loads((EXAMPLE.parent.parent / "pyproject.toml").read_text())["project"]["name"]
    plugin = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]["dependencies"]
    assert ours in plugin, plugin
