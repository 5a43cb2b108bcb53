"""The scheduler: places pending pods on nodes (filter plugins, then score plugins)."""
