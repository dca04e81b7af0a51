# Orsay's messages in Russian (plural categories: one, few, many).

start =
    👋 Привет! Я перерисовываю фото в стиле великих картин.

    Пришлите фото (или файл — для лучшего качества) и выберите картину. /styles — галерея, /help — подробнее.
help =
    Как это работает:
    1. Пришлите фото — как фото или как файл (JPEG, PNG, WebP, HEIC).
    2. Выберите картину, 🎲 — сюрприз, или 🖼 — свой стиль из вашей картинки.
       Быстрее: альбом из двух картинок — фото, затем стиль.
    3. Немного подождите: я покажу место в очереди и прогресс.

    /styles — галерея
    /settings — качество, сила, цвета
    /lang — язык
    /forget — удалить ваши картинки и настройки
styles_caption = Галерея: { $count } { $count ->
        [one] картина
        [few] картины
       *[many] картин
    }. Пришлите фото и выберите одну.
lang_choose = Выберите язык:
lang_set = Язык: русский 🇷🇺
pick_style = Отлично! Какую картину взять?
surprise = 🎲 Удиви меня
own_style = 🖼 Свой стиль
settings = ⚙️ Настройки
prev = ◀️
next = ▶️
send_style_now = Теперь пришлите картинку, стиль которой нужно взять.
settings_title = Настройки — нажмите, чтобы изменить.
keep_colors = Сохранять цвета фото: { $value }
as_file = Присылать и файлом: { $value }
on = да
off = нет
q_fast = быстро
q_balanced = средне
q_high = высокое
s_gentle = мягко
s_medium = средне
s_strong = сильно
back = ⬅️ К картинам
queued = ⏳ В очереди — №{ $position }, примерно { $minutes } мин.
started = 🎨 Начинаю рисовать…
progress =
    🎨 { $bar } { $percent }%
    Масштаб { $scale }/{ $scales } · осталось около { $eta }
progress_one_scale =
    🎨 { $bar } { $percent }%
    Осталось около { $eta }
cancel = ✖️ Отмена
cancelling = Отменяю…
cancelled = ✖️ Отменено.
not_yours = Это не ваша картинка.
caption =
    { $title } — { $artist }
    Готово за { $seconds } с
own_style_title = ваш стиль
another_style = 🎨 Другой стиль
stronger = ➕ Сильнее
gentler = ➖ Мягче
keep_colors_btn = 🌈 Цвета фото: { $value }
done_failed = 😔 Не получилось: { $reason }
not_an_image = Это не картинка. Пришлите JPEG, PNG, WebP или HEIC.
corrupt_image = Не удалось прочитать картинку — похоже, она повреждена или загрузилась не полностью. Попробуйте другую.
image_too_large = Картинка слишком большая: { $width }×{ $height } — это { $megapixels } Мп, а в PNG, WebP, TIFF, GIF и HEIC я принимаю до { $limit_megapixels } Мп. JPEG может быть любого размера.
image_too_small = Картинка слишком маленькая: { $width }×{ $height }. Каждая сторона должна быть не меньше { $min_side } пикс.
unsupported_format = Файлы { $format } я не принимаю. Пришлите картинку в JPEG, PNG, WebP или HEIC.
file_too_large = Файл слишком большой: { $megabytes } МБ, а Telegram позволяет мне скачивать файлы не больше { $limit_megabytes } МБ. Пришлите файл поменьше.
image_too_costly = Чтение этой картинки заняло бы у меня слишком много времени или памяти (она сохранена необычным образом). Сохраните её как обычный JPEG или PNG и пришлите ещё раз.
bad_image = Не получилось использовать эту картинку. Попробуйте другую.
too_many_jobs = У вас уже { $limit } { $limit ->
        [one] картинка
        [few] картинки
       *[many] картинок
    } в работе. Дождитесь, пока одна будет готова.
queue_full = Сейчас очень много работы. Попробуйте через несколько минут.
queue_unavailable = Я временно недоступен. Попробуйте через минуту.
painter_error = что-то сломалось у меня. Попробуйте ещё раз.
worker_died = художник несколько раз останавливался на этой картинке.
style_not_found = этой картины больше нет в галерее. Выберите другую.
gallery_error = сейчас не получается загрузить эту картину. Выберите другую или попробуйте позже.
weights_error = моя модель для рисования сейчас настроена неправильно. Попробуйте позже.
timeout = это заняло больше времени, чем я могу потратить на одну картинку. Попробуйте быстрое качество или размер поменьше.
note_oom_retry = ℹ️ Не хватило памяти: продолжаю в размере { $size } px.
painter_note = ℹ️ { $message }
unknown_command = Я не знаю такой команды. /help — что я умею.
text_instead = Пришлите фото, и я его перерисую. /help — как это работает.
no_photo = Вашего фото у меня больше нет. Пришлите его ещё раз.
gone = Эта кнопка устарела. Пришлите фото, чтобы начать заново.
album_two = Альбом из двух картинок = фото + стиль. Пришлите их ещё раз.
forgotten = Готово: ваши картинки, задания и настройки удалены.
stats =
    Очередь: ждут — { $queued }, в работе — { $running }, художников — { $workers }
    Сегодня: готово — { $done }, { $failed } { $failed ->
        [one] ошибка
        [few] ошибки
       *[many] ошибок
    }
    Среднее ожидание { $wait }, работа { $run }

# The language as its speakers name it, for the /lang buttons.
lang_name = Русский 🇷🇺

## The command menu Telegram shows next to the message field.
cmd_start = Начало
cmd_help = Как это работает
cmd_styles = Галерея
cmd_settings = Качество, сила, цвета
cmd_lang = Язык
cmd_forget = Удалить мои картинки и настройки
