"""Exceptions that carry a message meant for the chat user."""


class UserError(Exception):
    """The request cannot be served as given; the message is one line for the user."""


class ArgumentError(UserError):
    """An argument failed validation; the router adds the command's usage."""


class TaskFailure(Exception):
    """The task ran and could not do its work (device down, APIC refused...): one line."""
