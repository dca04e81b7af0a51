"""Chaos tests of the scale-out deployment: real bot and worker processes, a real redis-server."""
