"""address domain."""
