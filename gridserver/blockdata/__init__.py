"""blockdata domain."""
