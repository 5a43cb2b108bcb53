"""`python -m dockyard.services.scheduler`."""

from dockyard.services.runner import main

main("scheduler")
