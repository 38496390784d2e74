"""netbot-uptime: the `!uptime` command and the `uptime` monitor check kind."""
