"""JSON schemas boxpack validates against; installed as the package ``boxpack.schemas``."""
