"""Quality filters: ASR reject filters, text rules for generated rows, QA parsing and grounding, the LLM judge, near-duplicate removal."""
