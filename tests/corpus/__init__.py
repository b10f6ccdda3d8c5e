"""Corpora of inputs kept for tests and the reliability page."""
