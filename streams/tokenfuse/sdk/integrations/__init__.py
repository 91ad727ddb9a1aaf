"""Drop-in integrations: `tokenfuse.sdk.integrations.openai.wrap(client, fuse)`,
`tokenfuse.sdk.integrations.anthropic.wrap(client, fuse)`, and
`tokenfuse.sdk.integrations.litellm.TokenfuseLogger(fuse)`. Each imports its provider's package
only when used."""
