"""Segments joined to states: each connection as the textbook's ladder, with its rules checked."""
