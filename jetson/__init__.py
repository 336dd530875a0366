"""JetPack deployment helpers: engine build scripts, power logging, services."""
