"""opeval: a chaos evaluation harness for AI operator (SRE) agents.

It starts a real distributed system, breaks it, lets an agent (or nobody) repair it,
and records every step as an immutable event in an event-sourced store.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
