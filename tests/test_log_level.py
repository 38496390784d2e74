"""`[bot] log_level` is honoured; --log-level, then CHATBOT_LOG_LEVEL, win over it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatbot.cli import log_level
from chatbot.config import ConfigError, parse_config
from chatbot.errors import UserError

INVENTORY = Path(__file__).resolve().parent.parent / "inventory"
# asyncio.run logs this at DEBUG when the shell starts its loop: proof of the level in force.
DEBUG_LINE = "DEBUG asyncio: Using selector"


def shell_stderr(tmp_path: Path, configured: str | None, *flags: str, env_level: str | None = None) -> str:
    """Start `chatbot shell` on a config with `[bot] log_level = configured`, end it at once."""
    bot = f'[bot]\nlog_level = "{configured}"\n' if configured else ""
    (tmp_path / "bot.toml").write_text(f'{bot}[inventory]\npath = "{INVENTORY}"\n')
    env = {k: v for k, v in os.environ.items() if k != "CHATBOT_LOG_LEVEL"}
    if env_level is not None:
        env["CHATBOT_LOG_LEVEL"] = env_level
    proc = subprocess.run([sys.executable, "-m", "chatbot", *flags, "shell", "--config", "bot.toml"],
                          cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_the_configured_level_is_used(tmp_path: Path) -> None:
    assert DEBUG_LINE in shell_stderr(tmp_path, "DEBUG")


def test_without_a_configured_level_the_default_is_warning(tmp_path: Path) -> None:
    assert DEBUG_LINE not in shell_stderr(tmp_path, None)


def test_the_flag_wins_over_the_config(tmp_path: Path) -> None:
    assert DEBUG_LINE not in shell_stderr(tmp_path, "DEBUG", "--log-level", "WARNING")


def test_the_environment_wins_over_the_config(tmp_path: Path) -> None:
    assert DEBUG_LINE not in shell_stderr(tmp_path, "DEBUG", env_level="WARNING")


def test_the_flag_wins_over_the_environment(tmp_path: Path) -> None:
    assert DEBUG_LINE in shell_stderr(tmp_path, "WARNING", "--log-level", "debug", env_level="ERROR")


def test_order_of_precedence() -> None:
    assert log_level("ERROR", "DEBUG", "INFO") == "ERROR"
    assert log_level(None, "debug", "INFO") == "DEBUG"
    assert log_level(None, None, "INFO") == "INFO"
    assert log_level(None, None, None) == "WARNING"


def test_a_bad_level_in_the_environment_is_one_clear_error() -> None:
    with pytest.raises(UserError, match="CHATBOT_LOG_LEVEL=loud"):
        log_level(None, "loud", "INFO")


def test_a_bad_level_in_the_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="bot.log_level"):
        parse_config({"bot": {"log_level": "loud"}})
    assert parse_config({"bot": {"log_level": "info"}}).bot.log_level == "INFO"
