"""The enforcement adapter."""
