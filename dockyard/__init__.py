"""Dockyard: container orchestration on an event log."""
