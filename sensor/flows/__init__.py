"""Flow table, per-direction TCP reassembly and idle eviction."""
