"""Orsay's engine: Gatys neural style transfer and everything around it that knows no Telegram.

style_transfer.py strings the painting together from small pieces (context.py, start.py,
objective.py, optimize.py, lbfgs.py, schedule.py; one job or a batch); imaging/ is the door every
picture comes in by; gallery.py finds and fetches the paintings; queue/ carries jobs between
callers and painters; commands/ are the engine's `orsay` subcommands; settings.py reads every
setting once (callers pass the `Settings` down) and presets.py names the qualities and
strengths. Nothing here imports `bot` or `telegram`: the bot depends on the engine, never the
other way round.
"""
