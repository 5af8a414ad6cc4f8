"""Errors a person can act on: the CLI prints them as one line, never as a traceback."""


class UserError(Exception):
    """A mistake or missing prerequisite on the user's side (bad config, no Java, broker down)."""
