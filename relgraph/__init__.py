"""relgraph: a network-scale relationship graph over Neo4j, PyG, Ray and gRPC."""
