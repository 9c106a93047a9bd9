"""The console's HTTP API, one module per area."""
