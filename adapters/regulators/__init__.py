"""The regulators adapter."""
