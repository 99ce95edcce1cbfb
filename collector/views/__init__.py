"""Renderers for people and programs: watch lines, ladders as text, JSON and SVG, filters."""
