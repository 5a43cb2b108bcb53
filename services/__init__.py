"""Dockyard services, one package each, runnable as `python -m dockyard.services.<name>`."""
