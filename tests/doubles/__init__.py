"""Test doubles shared by every test package: the fake Bot API server, stub painters, and the
helpers that start bots, queues and redis-server for a test."""
