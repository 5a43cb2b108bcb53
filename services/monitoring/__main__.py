"""`python -m dockyard.services.monitoring`."""

from dockyard.services.runner import main

main("monitoring")
