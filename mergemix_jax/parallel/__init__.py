"""Meshes, multi-host start-up and the logical-axis sharding table."""
