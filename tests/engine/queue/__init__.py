"""Tests of engine.queue: the contract over both backends, crashes, policy, the real painter."""
