"""ClickHouse history: client, migrations, the sink that fills the tables, read-only SQL."""
