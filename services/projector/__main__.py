"""`python -m dockyard.services.projector`: run the projector service."""

from dockyard.services.runner import main

main("projector")
