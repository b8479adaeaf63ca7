"""Actors: the base class, the process runtime, the role registry, and one module per role."""
