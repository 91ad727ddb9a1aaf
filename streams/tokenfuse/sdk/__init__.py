"""The agent-runtime SDK: `Fuse` reports usage without blocking and enforces the kill switch.
See docs/sdk.md. Integrations for OpenAI, Anthropic and LiteLLM live in tokenfuse.sdk.integrations."""

from tokenfuse.sdk.fuse import Fuse, Run
from tokenfuse.sdk.options import FuseOptions

__all__ = ["Fuse", "FuseOptions", "Run"]
