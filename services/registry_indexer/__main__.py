"""`python -m dockyard.services.registry_indexer`: run the registry indexer."""

from dockyard.services.runner import main

main("registry-indexer")
