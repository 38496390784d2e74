"""The fixtures the tests share (lab, lab_bot) come from chatbot.testing, the pytest plugin
the bot installs for every task author (see docs/plugins.md); this suite uses it too."""
