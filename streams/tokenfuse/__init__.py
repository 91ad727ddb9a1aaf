"""tokenfuse: a real-time fuse for LLM-agent token spend."""

__version__ = "0.1.0"
