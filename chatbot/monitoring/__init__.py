"""Monitoring: checks on a schedule, alerts to a room on state changes only.

Checks come from task modules (`@check_kind`), so the core knows no network. The parts:
`model` (what a monitor is), `store` (its rows and its targets' states in the bot's
database), `alerts` (the state machine: flap damping, recovery, reminders, site
outages; pure) and `service` (the scheduler and the wiring to checks and adapters).
"""

from chatbot.monitoring.model import Monitor, MonitorRefused
from chatbot.monitoring.service import RUN_SCHEDULED, MonitorService, Notifier, run_scheduled
from chatbot.store import monitor_state_table, monitors_table

__all__ = ["RUN_SCHEDULED", "Monitor", "MonitorRefused", "MonitorService", "Notifier", "monitor_state_table",
           "monitors_table", "run_scheduled"]
