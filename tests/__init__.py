"""Orsay's test suite, one package per source package (engine, queue, bot, ops) plus `doubles`."""
