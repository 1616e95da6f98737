"""The Neo4j store: provisioning, schema, ingest, queries and pseudonymization."""
