"""The agent-runtime SDK: `Fuse` reports usage without blocking, enforces the kill switch and, for
run budgets (and the scope kinds in `local_scopes`), enforces budgets locally from its own count.
See docs/sdk.md. Integrations for OpenAI, Anthropic and LiteLLM live in tokenfuse.sdk.integrations."""

from tokenfuse.sdk.fuse import Fuse, Run
from tokenfuse.sdk.options import FuseOptions
from tokenfuse.sdk.reporter import FlushResult

__all__ = ["FlushResult", "Fuse", "FuseOptions", "Run"]
