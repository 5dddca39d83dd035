"""The court adapter."""
