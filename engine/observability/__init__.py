"""Logging, metrics and health endpoints shared by `orsay bot` and `orsay worker`."""
