"""Run-time synthesised known-truth audio for the metadata tests and benchmark."""
