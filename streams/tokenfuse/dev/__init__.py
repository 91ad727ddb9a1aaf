"""Development helpers: the local demo and the launcher of process roles it and the tests use."""
