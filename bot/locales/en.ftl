# Orsay's messages in English: the reference catalogue; every other language falls back to it.

start =
    👋 Hi! I repaint your photos in the style of great paintings.

    Send me a photo (or an image file for full quality), then pick a painting. /styles shows the gallery, /help explains the rest.
help =
    How it works:
    1. Send a photo — as a photo or as a file (JPEG, PNG, WebP, HEIC).
    2. Pick a painting, 🎲 for a surprise, or 🖼 to use your own picture as the style.
       Shortcut: send an album of two images — the photo, then the style.
    3. Wait a little: I show your place in line and the progress.

    /styles — the gallery
    /settings — quality, strength, colors
    /lang — language
    /forget — delete your pictures and settings
styles_caption = The gallery: { $count } { $count ->
        [one] painting
       *[other] paintings
    }. Send a photo and pick one.
lang_choose = Choose your language:
lang_set = Language: English 🇬🇧
pick_style = Nice! Which painting should I use?
surprise = 🎲 Surprise me
own_style = 🖼 My own style
settings = ⚙️ Settings
prev = ◀️
next = ▶️
send_style_now = Now send the picture whose style I should use.
settings_title = Settings — tap to change.
keep_colors = Keep photo colors: { $value }
as_file = Also send as file: { $value }
on = on
off = off
q_fast = fast
q_balanced = balanced
q_high = high
q_print = 🖼 print
print_queued = 🖼 A print, { $size } px on the long side: it takes longer, about { $minutes } min, and comes as a file.
s_gentle = gentle
s_medium = medium
s_strong = strong
back = ⬅️ Back to paintings
queued = ⏳ Queued — #{ $position } in line, about { $minutes } min.
started = 🎨 Painting started…
progress =
    🎨 { $bar } { $percent }%
    Scale { $scale }/{ $scales } · about { $eta } left
progress_one_scale =
    🎨 { $bar } { $percent }%
    About { $eta } left
cancel = ✖️ Cancel
cancelling = Cancelling…
cancelled = ✖️ Cancelled.
not_yours = This is not your picture.
caption =
    { $title } — { $artist }
    Painted in { $seconds } s
own_style_title = your own style
try_again = 🔁 Try again
try_fast = ⚡ Try the fast quality
another_style = 🎨 Another style
stronger = ➕ Stronger
gentler = ➖ Gentler
keep_colors_btn = 🌈 Keep colors: { $value }
done_failed = 😔 Sorry, painting failed: { $reason }
not_an_image = That file is not an image. Please send a JPEG, PNG, WebP or HEIC picture.
corrupt_image = I could not read that image — it seems damaged or incomplete. Try another one.
image_too_large = That picture is too large: { $width }×{ $height } is { $megapixels } megapixels, and I take up to { $limit_megapixels } in PNG, WebP, TIFF, GIF or HEIC. A JPEG may be any size.
image_too_small = That picture is too small: { $width }×{ $height }. Each side needs at least { $min_side } pixels.
unsupported_format = I do not take { $format } files. Please send the picture as JPEG, PNG, WebP or HEIC.
file_too_large = That file is too large: { $megabytes } MB, and Telegram lets me download files of up to { $limit_megabytes } MB. Please send a smaller one.
image_too_costly = Reading that picture would take me too much time or memory (it is saved in an unusual way). Please save it as an ordinary JPEG or PNG and send it again.
bad_image = I could not use that picture. Try another one.
too_many_jobs = You already have { $limit } { $limit ->
        [one] picture
       *[other] pictures
    } in progress. Wait for one to finish.
queue_full = I am very busy right now. Please try again in a few minutes.
queue_unavailable = I am temporarily unavailable. Please try again in a minute.
queue_delayed = ⏳ I lost touch with my painters for a moment. Your picture is not lost: it will arrive when they are back.
painter_error = something went wrong on my side. Please try again.
worker_died = the painter stopped several times on this picture.
style_not_found = that painting is no longer in the gallery. Please pick another one.
gallery_error = I could not load that painting just now. Please pick another one or try later.
weights_error = my painting model is not set up properly right now. Please try again later.
timeout = it took longer than I can spend on one picture. Try the fast quality or a smaller size.
note_oom_retry = ℹ️ Not enough memory: I continue at { $size } px.
painter_note = ℹ️ { $message }
unknown_command = I do not know that command. /help lists what I can do.
text_instead = Send me a photo and I will repaint it. /help explains how.
no_photo = I no longer have your photo. Please send it again.
gone = That button has expired. Send a photo to start again.
album_two = An album of exactly two images works as photo + style. Send them again.
forgotten = Done: your pictures, jobs and settings are deleted.
stats =
    Queue: { $queued } waiting, { $running } running, workers { $workers }
    Today: { $done } done, { $failed } failed
    Mean wait { $wait }, mean run { $run }

# The language as its speakers name it, for the /lang buttons.
lang_name = English 🇬🇧

## The command menu Telegram shows next to the message field.
cmd_start = Welcome
cmd_help = How it works
cmd_styles = The gallery
cmd_settings = Quality, strength, colors
cmd_lang = Language
cmd_forget = Delete my pictures and settings

## Replays the bot answers instead of running them (issue 30, findings 7 and 8).
update_too_old = That was a while ago and I could not answer it in time. Please send it again.
update_set_aside = Sorry, I could not handle your last message: it failed several times, so I set it aside. Please try again, or send another picture.
