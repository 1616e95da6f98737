"""PyG data export, features and models: the relationship-strength (link) model and its evaluation."""
