"""Wire types: msgspec structs for events, commands, manifests and query results. No I/O."""
