"""`python -m dockyard.services.controller`."""

from dockyard.services.runner import main

main("controller")
