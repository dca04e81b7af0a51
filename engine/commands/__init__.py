"""The engine's `orsay` subcommands (stylize, gallery, worker, demo), assembled by orsay.cli.

Each module has `register(subparsers, settings)`, whose flags default to the settings, and a
`run(args, settings)` that returns an exit code."""
