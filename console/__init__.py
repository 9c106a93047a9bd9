"""The console and the command line: stores, HTTP API, web UI, tiers, the `icswatch` CLI."""
