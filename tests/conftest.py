"""The fixtures the tests share (lab, lab_bot) come from chatbot.testing, the pytest plugin
the bot installs for every task author (see docs/plugins.md); this suite uses it too.

Installed, the plugin loads through its `pytest11` entry point under this same name, and
this line then does nothing; it keeps the suite working in a venv installed before the
entry point existed."""

pytest_plugins = ["chatbot.testing"]
