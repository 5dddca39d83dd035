"""The police adapter."""
