"""Auth test fixtures (tokens for each role); registered from conftest.py."""
