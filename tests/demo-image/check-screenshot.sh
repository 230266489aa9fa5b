#!/bin/bash
# Does a screenshot of the demo desktop (scripts/demo-image) look like one?
#
#   check-screenshot.sh IMAGE      (any format ImageMagick reads; QMP gives PPM)
#
# Exit 0 when it does; exit 1 and say why on stdout when it does not:
#   - at least 800x600 and at least 50 distinct colours (a blank screen or a
#     text console has a handful);
#   - the image's background colour covers at least 15 % of the screen;
#   - the terminal's background colour covers at least 5 % (the xterm the
#     session opens);
#   - the bottom 16 rows are a taskbar: at least 4 colours, less than half
#     of them background.
# The measurements go to stderr.
set -euo pipefail

[[ $# -eq 1 && -s $1 ]] || {
    echo "usage: $0 IMAGE" >&2
    exit 2
}
for t in convert identify; do
    command -v "$t" >/dev/null || { echo "$t not found (apt-get install imagemagick)"; exit 1; }
done
shot=$1

# The image's colours (scripts/demo-image: .jwmrc background, xterm -bg).
background='#1F4E79'
terminal_bg='#F4F4F0'

# count COLOUR: pixels of exactly COLOUR in an ImageMagick histogram on stdin.
count() {
    awk -v c="$1" 'toupper($0) ~ c { sub(":", "", $1); n += $1 } END { print n + 0 }'
}

read -r w h < <(identify -format '%w %h\n' "$shot") || { echo "identify cannot read $shot"; exit 1; }
total=$((w * h))
((w >= 800 && h >= 600)) || { echo "screen is ${w}x${h}, expected at least 800x600"; exit 1; }
colours=$(convert "$shot" -depth 8 -format %k info:)
hist=$(convert "$shot" -depth 8 -format %c histogram:info:-)
bg_n=$(count "$background" <<<"$hist")
term_n=$(count "$terminal_bg" <<<"$hist")
strip_colours=$(convert "$shot" -depth 8 -gravity South -crop "${w}x16+0+0" +repage -format %k info:)
strip_bg=$(convert "$shot" -depth 8 -gravity South -crop "${w}x16+0+0" +repage -format %c histogram:info:- |
    count "$background")
echo "screenshot ${w}x${h}: $colours colours, background $((100 * bg_n / total))%," \
    "terminal $((100 * term_n / total))%, bottom strip $strip_colours colours" >&2

((colours >= 50)) || { echo "only $colours colours: a blank or text-console screen"; exit 1; }
((bg_n * 100 >= total * 15)) ||
    { echo "background colour $background covers $((100 * bg_n / total))% (< 15%)"; exit 1; }
((term_n * 100 >= total * 5)) ||
    { echo "terminal colour $terminal_bg covers $((100 * term_n / total))% (< 5%): no terminal window"; exit 1; }
((strip_colours >= 4 && strip_bg * 2 < w * 16)) ||
    { echo "no taskbar along the bottom ($strip_colours colours, $strip_bg background pixels)"; exit 1; }
exit 0
