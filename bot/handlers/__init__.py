"""One short async handler per thing a user does, by kind: `commands`, `pictures` (photos,
files, albums) and `buttons`; `jobs` is the submitting they share, `errors` the error handler.
Each takes a `bot.context.BotContext`; registration and the conversation are in `bot.app`."""
