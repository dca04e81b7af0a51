"""Orsay's engine: Gatys neural style transfer and everything around it that knows no Telegram.

painter.py paints (VGG features, losses, schedule, L-BFGS); gallery.py holds the paintings;
queue/ carries jobs between callers and painters; commands/ are the engine's `orsay`
subcommands; settings.py reads every setting once (callers pass the `Settings` down) and
presets.py names the qualities and strengths. Nothing here imports `bot` or `telegram`: the
bot depends on the engine, never the other way round.
"""
