"""scrapli's plugin hook for third-party transports: `transport="netbot"` loads
`scrapli_netbot.transport`. The transport itself lives in chatbot/ssh_transport.py."""
