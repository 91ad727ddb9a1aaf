"""tokenfuse: a real-time fuse for LLM-agent token spend."""

__version__ = "0.1.0"

__all__ = ["Fuse", "FuseOptions"]


def __getattr__(name: str):
    # Lazy: `import tokenfuse` stays cheap; the SDK (confluent-kafka, fastavro) loads on first use.
    if name in __all__:
        from tokenfuse import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'tokenfuse' has no attribute {name!r}")
