"""The node agent: registers a node, heartbeats, runs the pods bound to it through a driver."""
