"""The monitoring service: cluster-state metrics and alert rules from the log and the heartbeats."""
