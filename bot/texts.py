"""Everything the bot says, in English and Russian. One dict per language keeps translations side
by side, so a missing key shows up in a test rather than in front of a user."""

from __future__ import annotations

LANGUAGES = ("en", "ru")

EN: dict[str, str] = {
    "start": (
        "👋 Hi! I repaint your photos in the style of great paintings.\n\n"
        "Send me a photo (or an image file for full quality), then pick a painting. "
        "/styles shows the gallery, /help explains the rest."
    ),
    "help": (
        "How it works:\n"
        "1. Send a photo — as a photo or as a file (JPEG, PNG, WEBP).\n"
        "2. Pick a painting, 🎲 for a surprise, or 🖼 to use your own picture as the style.\n"
        "   Shortcut: send an album of two images — the photo, then the style.\n"
        "3. Wait a little: I show your place in line and the progress.\n\n"
        "/styles — the gallery\n/settings — quality, strength, colors\n"
        "/lang — language\n/forget — delete your pictures and settings"
    ),
    "styles_caption": "The gallery: {count} paintings. Send a photo and pick one.",
    "lang_choose": "Choose your language:",
    "lang_set": "Language: English 🇬🇧",
    "pick_style": "Nice! Which painting should I use?",
    "surprise": "🎲 Surprise me",
    "own_style": "🖼 My own style",
    "settings": "⚙️ Settings",
    "prev": "◀️",
    "next": "▶️",
    "send_style_now": "Now send the picture whose style I should use.",
    "style_received": "Got your style picture.",
    "settings_title": "Settings — tap to change.",
    "quality": "Quality: {value}",
    "strength": "Strength: {value}",
    "keep_colors": "Keep photo colors: {value}",
    "as_file": "Also send as file: {value}",
    "on": "on",
    "off": "off",
    "q_fast": "fast",
    "q_balanced": "balanced",
    "q_high": "high",
    "s_gentle": "gentle",
    "s_medium": "medium",
    "s_strong": "strong",
    "back": "⬅️ Back to paintings",
    "queued": "⏳ Queued — #{position} in line, about {minutes} min.",
    "started": "🎨 Painting started…",
    "progress": "🎨 {bar} {percent}%\nScale {scale}/{scales} · about {eta} left",
    "progress_one_scale": "🎨 {bar} {percent}%\nAbout {eta} left",
    "cancel": "✖️ Cancel",
    "cancelling": "Cancelling…",
    "cancelled": "✖️ Cancelled.",
    "not_yours": "This is not your picture.",
    "caption": "{title} — {artist}\nPainted in {seconds} s",
    "own_style_title": "your own style",
    "another_style": "🎨 Another style",
    "stronger": "➕ Stronger",
    "gentler": "➖ Gentler",
    "keep_colors_btn": "🌈 Keep colors: {value}",
    "done_failed": "😔 Sorry, painting failed: {reason}",
    "not_an_image": "That file is not an image. Please send a JPEG, PNG, WebP or HEIC picture.",
    "unsupported_format": (
        "I do not take {format} files. Please send the picture as JPEG, PNG, WebP or HEIC."
    ),
    "corrupt_image": (
        "I could not read that image — it seems damaged or incomplete. Try another one."
    ),
    "image_too_large": (
        "That picture is too large: {width}×{height} is {megapixels} megapixels, "
        "and I take up to {limit_megapixels} in PNG, WebP, TIFF, GIF or HEIC. "
        "A JPEG may be any size."
    ),
    "file_too_large": (
        "That file is too large: {megabytes} MB, and Telegram lets me download files of up to "
        "{limit_megabytes} MB. Please send a smaller one."
    ),
    "image_too_small": (
        "That picture is too small: {width}×{height}. Each side needs at least {min_side} pixels."
    ),
    "image_too_costly": (
        "Reading that picture would take me too much time or memory (it is saved in an unusual "
        "way). Please save it as an ordinary JPEG or PNG and send it again."
    ),
    "bad_image": "I could not use that picture. Try another one.",
    "too_many_jobs": "You already have {limit} pictures in progress. Wait for one to finish.",
    "queue_full": "I am very busy right now. Please try again in a few minutes.",
    "queue_unavailable": "I am temporarily unavailable. Please try again in a minute.",
    "painter_error": "something went wrong on my side. Please try again.",
    "worker_died": "the painter stopped several times on this picture.",
    "style_not_found": "that painting is no longer in the gallery. Please pick another one.",
    "unknown_command": "I do not know that command. /help lists what I can do.",
    "text_instead": "Send me a photo and I will repaint it. /help explains how.",
    "no_photo": "I no longer have your photo. Please send it again.",
    "gone": "That button has expired. Send a photo to start again.",
    "album_two": "An album of exactly two images works as photo + style. Send them again.",
    "forgotten": "Done: your pictures, jobs and settings are deleted.",
    "stats": (
        "Queue: {queued} waiting, {running} running, workers {workers}\n"
        "Today: {done} done, {failed} failed\nMean wait {wait}, mean run {run}"
    ),
}

RU: dict[str, str] = {
    "start": (
        "👋 Привет! Я перерисовываю фото в стиле великих картин.\n\n"
        "Пришлите фото (или файл — для лучшего качества) и выберите картину. "
        "/styles — галерея, /help — подробнее."
    ),
    "help": (
        "Как это работает:\n"
        "1. Пришлите фото — как фото или как файл (JPEG, PNG, WEBP).\n"
        "2. Выберите картину, 🎲 — сюрприз, или 🖼 — свой стиль из вашей картинки.\n"
        "   Быстрее: альбом из двух картинок — фото, затем стиль.\n"
        "3. Немного подождите: я покажу место в очереди и прогресс.\n\n"
        "/styles — галерея\n/settings — качество, сила, цвета\n"
        "/lang — язык\n/forget — удалить ваши картинки и настройки"
    ),
    "styles_caption": "Галерея: {count} картин. Пришлите фото и выберите одну.",
    "lang_choose": "Выберите язык:",
    "lang_set": "Язык: русский 🇷🇺",
    "pick_style": "Отлично! Какую картину взять?",
    "surprise": "🎲 Удиви меня",
    "own_style": "🖼 Свой стиль",
    "settings": "⚙️ Настройки",
    "prev": "◀️",
    "next": "▶️",
    "send_style_now": "Теперь пришлите картинку, стиль которой нужно взять.",
    "style_received": "Картинка стиля получена.",
    "settings_title": "Настройки — нажмите, чтобы изменить.",
    "quality": "Качество: {value}",
    "strength": "Сила: {value}",
    "keep_colors": "Сохранять цвета фото: {value}",
    "as_file": "Присылать и файлом: {value}",
    "on": "да",
    "off": "нет",
    "q_fast": "быстро",
    "q_balanced": "средне",
    "q_high": "высокое",
    "s_gentle": "мягко",
    "s_medium": "средне",
    "s_strong": "сильно",
    "back": "⬅️ К картинам",
    "queued": "⏳ В очереди — №{position}, примерно {minutes} мин.",
    "started": "🎨 Начинаю рисовать…",
    "progress": "🎨 {bar} {percent}%\nМасштаб {scale}/{scales} · осталось около {eta}",
    "progress_one_scale": "🎨 {bar} {percent}%\nОсталось около {eta}",
    "cancel": "✖️ Отмена",
    "cancelling": "Отменяю…",
    "cancelled": "✖️ Отменено.",
    "not_yours": "Это не ваша картинка.",
    "caption": "{title} — {artist}\nГотово за {seconds} с",
    "own_style_title": "ваш стиль",
    "another_style": "🎨 Другой стиль",
    "stronger": "➕ Сильнее",
    "gentler": "➖ Мягче",
    "keep_colors_btn": "🌈 Цвета фото: {value}",
    "done_failed": "😔 Не получилось: {reason}",
    "not_an_image": "Это не картинка. Пришлите JPEG, PNG, WebP или HEIC.",
    "unsupported_format": (
        "Файлы {format} я не принимаю. Пришлите картинку в JPEG, PNG, WebP или HEIC."
    ),
    "corrupt_image": (
        "Не удалось прочитать картинку — похоже, она повреждена или загрузилась не полностью. "
        "Попробуйте другую."
    ),
    "image_too_large": (
        "Картинка слишком большая: {width}×{height} — это {megapixels} Мп, "
        "а в PNG, WebP, TIFF, GIF и HEIC я принимаю до {limit_megapixels} Мп. "
        "JPEG может быть любого размера."
    ),
    "file_too_large": (
        "Файл слишком большой: {megabytes} МБ, а Telegram позволяет мне скачивать файлы не больше "
        "{limit_megabytes} МБ. Пришлите файл поменьше."
    ),
    "image_too_small": (
        "Картинка слишком маленькая: {width}×{height}. "
        "Каждая сторона должна быть не меньше {min_side} пикс."
    ),
    "image_too_costly": (
        "Чтение этой картинки заняло бы у меня слишком много времени или памяти (она сохранена "
        "необычным образом). Сохраните её как обычный JPEG или PNG и пришлите ещё раз."
    ),
    "bad_image": "Не получилось использовать эту картинку. Попробуйте другую.",
    "too_many_jobs": "У вас уже {limit} картинки в работе. Дождитесь, пока одна будет готова.",
    "queue_full": "Сейчас очень много работы. Попробуйте через несколько минут.",
    "queue_unavailable": "Я временно недоступен. Попробуйте через минуту.",
    "painter_error": "что-то сломалось у меня. Попробуйте ещё раз.",
    "worker_died": "художник несколько раз останавливался на этой картинке.",
    "style_not_found": "этой картины больше нет в галерее. Выберите другую.",
    "unknown_command": "Я не знаю такой команды. /help — что я умею.",
    "text_instead": "Пришлите фото, и я его перерисую. /help — как это работает.",
    "no_photo": "Вашего фото у меня больше нет. Пришлите его ещё раз.",
    "gone": "Эта кнопка устарела. Пришлите фото, чтобы начать заново.",
    "album_two": "Альбом из двух картинок = фото + стиль. Пришлите их ещё раз.",
    "forgotten": "Готово: ваши картинки, задания и настройки удалены.",
    "stats": (
        "Очередь: {queued} ждут, {running} в работе, художников {workers}\n"
        "Сегодня: {done} готово, {failed} ошибок\nСреднее ожидание {wait}, работа {run}"
    ),
}

TEXTS: dict[str, dict[str, str]] = {"en": EN, "ru": RU}


def pick_language(code: str | None) -> str:
    """Russian for ru/uk/be/kk speakers (Telegram's `language_code`), English otherwise."""
    base = (code or "").split("-")[0].lower()
    return "ru" if base in ("ru", "uk", "be", "kk") else "en"


def t(lang: str, key: str, **values: object) -> str:
    """The text `key` in `lang` (English if missing), formatted with `values`."""
    template = TEXTS.get(lang, EN).get(key) or EN[key]
    return template.format(**values) if values else template
