"""Builds the synthetic Docker Swarm overlay captures and their Docker metadata."""
