"""Code shared by ingest and query: wire types, the pure projection, names, adapters."""

__version__ = "0.1.0"
