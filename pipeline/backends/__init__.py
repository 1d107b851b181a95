"""Model backends only (no rows, no rejects): one folder per family, one file per backend, a registry each."""
