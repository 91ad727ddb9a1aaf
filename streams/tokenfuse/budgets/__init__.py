"""Budgets as code: a YAML file validated line by line (spec), published to the compacted budgets
topic and read back from it (store)."""
