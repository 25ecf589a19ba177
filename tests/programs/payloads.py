"""Importable classes for the serialisation tests (pickled by reference, not by value)."""

from __future__ import annotations


class Secret:
    def __init__(self, text: str) -> None:
        self.text = text
