"""Orsay's Telegram bot (python-telegram-bot 22): chats in, jobs to `engine.queue`, pictures out.

It gets its configuration as an `engine.settings.Settings` (bot.config adds the token check
only `orsay bot` needs) and registers the `orsay bot` subcommand in bot.command. It talks to
the painter only through the queue seam, so it runs without torch when workers paint.
"""
