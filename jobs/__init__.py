"""Jobs: generate, ingest benchmark and (later) train and evaluate; runnable locally or on Ray."""
