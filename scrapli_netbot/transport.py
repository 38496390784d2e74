"""Loaded by scrapli for `transport="netbot"` (class NetbotTransport, PluginTransportArgs)."""

from chatbot.ssh_transport import NetbotTransport, PluginTransportArgs

__all__ = ["NetbotTransport", "PluginTransportArgs"]
