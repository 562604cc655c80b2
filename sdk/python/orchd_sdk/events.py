"""Kubernetes Events about objects (controllers only). The host
deduplicates repeats into one Event with a count, as Kubernetes does."""

from wit_world.imports import events as _wit

EventType = _wit.EventType


def record(regarding, event_type: "_wit.EventType", reason: str, message: str) -> None:
    """Records an Event about ``regarding`` (an ``ObjectRef``). ``reason`` is
    a short CamelCase word, ``message`` a sentence for humans."""
    _wit.record(regarding, event_type, reason, message)


def normal(regarding, reason: str, message: str) -> None:
    """Records a ``Normal`` Event."""
    record(regarding, EventType.NORMAL, reason, message)


def warning(regarding, reason: str, message: str) -> None:
    """Records a ``Warning`` Event."""
    record(regarding, EventType.WARNING, reason, message)
