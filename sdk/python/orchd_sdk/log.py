"""Logging into the host's log, tagged with the plugin's name. Every world."""

from wit_world.imports import log as _wit

Level = _wit.Level


def log(level: "_wit.Level", message: str) -> None:
    """Writes ``message`` at ``level``."""
    _wit.log(level, str(message))


def debug(message: str) -> None:
    """Writes ``message`` at debug level."""
    log(Level.DEBUG, message)


def info(message: str) -> None:
    """Writes ``message`` at info level."""
    log(Level.INFO, message)


def warn(message: str) -> None:
    """Writes ``message`` at warn level."""
    log(Level.WARN, message)


def error(message: str) -> None:
    """Writes ``message`` at error level."""
    log(Level.ERROR, message)
