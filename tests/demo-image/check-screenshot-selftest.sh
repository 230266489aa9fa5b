#!/bin/bash
# check-screenshot.sh must tell a desktop from what a failed boot shows:
# synthetic screens (blank, background only, a text console, a desktop
# without its taskbar or without its terminal) are rejected, and a synthetic
# desktop with the image's colours is accepted.  Needs ImageMagick and the
# DejaVu fonts (fonts-dejavu-core) to draw text.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
check=$here/check-screenshot.sh
font=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf
command -v convert >/dev/null || { echo "FAIL: convert not found (apt-get install imagemagick)"; exit 1; }
[[ -f $font ]] || { echo "FAIL: $font missing (apt-get install fonts-dejavu-core)"; exit 1; }

tmp=$(mktemp -d /tmp/atrium-demoimg.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

text="Debian GNU/Linux 12 atrium-desktop tty1\n\natrium-desktop login: demo (automatic login)\nLinux atrium-desktop 6.1.0 #1 SMP PREEMPT_DYNAMIC Debian\n\n\$ ls -l /usr/share"
mk() { convert -size 1024x768 "$@" -depth 8 "ppm:$tmp/$name.ppm"; }

name=desktop mk xc:'#1f4e79' \
    -fill '#f4f4f0' -draw 'rectangle 40,60 900,560' \
    -fill '#2a6fb0' -draw 'rectangle 40,36 900,60' \
    -font "$font" -pointsize 13 -fill '#202020' -annotate +46+80 "$text" \
    -fill '#2b2b2b' -draw 'rectangle 0,738 1023,767' \
    -fill '#ffffff' -annotate +6+758 'Atrium   Terminal' -annotate +880+758 'Wed 25 Nov  13:04:01'
name=blank mk xc:black
name=background-only mk xc:'#1f4e79'
name=console mk xc:black -font "$font" -pointsize 14 -fill '#aaaaaa' -annotate +8+20 "$text"
name=no-taskbar mk "$tmp/desktop.ppm" -fill '#1f4e79' -draw 'rectangle 0,738 1023,767'
name=no-terminal mk "$tmp/desktop.ppm" -fill '#1f4e79' -draw 'rectangle 40,36 900,560'
name=small mk "$tmp/desktop.ppm" -resize 640x480!

rc=0
expect() {
    local want=$1 f=$2 got=0 why
    why=$("$check" "$tmp/$f.ppm" 2>/dev/null) || got=1
    if [[ $want == accept && $got == 0 ]] || [[ $want == reject && $got == 1 ]]; then
        echo "ok: $f ${want}ed${why:+ ($why)}"
    else
        echo "FAIL: $f should be ${want}ed${why:+ ($why)}"
        rc=1
    fi
}
expect accept desktop
for f in blank background-only console no-taskbar no-terminal small; do
    expect reject "$f"
done
exit "$rc"
