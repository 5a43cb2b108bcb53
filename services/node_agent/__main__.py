"""`python -m dockyard.services.node_agent`."""

from dockyard.services.runner import main

main("node-agent")
