"""`python -m dockyard.services.api`: run the api service."""

from dockyard.services.runner import main

main("api")
