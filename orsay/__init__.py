"""The top of the house: the `orsay` command line, which assembles the engine's commands
(engine.commands) and the bot's (bot.command). It sits above both packages so that `engine`
never imports `bot`: the arrows point engine <- bot <- orsay."""
