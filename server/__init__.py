"""The gRPC service relgraph.v1: auth and tenancy, the serving snapshot, handlers."""
