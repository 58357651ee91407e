#!/usr/bin/env bash
# Fetch the real photographs anyrestore trains on (Debian wallpaper packages, CC-BY / CC-BY-SA / CC0) into a
# cache folder, without installing anything system-wide: apt-get download + dpkg -x.
#   scripts/fetch_training_photos.sh [DEST]      (default: ~/.cache/anyrestore/photos)
# The default test suite never needs these; evaluation uses the lossless photos shipped by scikit-image.
set -euo pipefail
dest="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/anyrestore/photos}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
cd "$work"
packages=(lomiri-wallpapers-16.04 plasma-workspace-wallpapers)
if ! apt-get download "${packages[@]}" >/dev/null 2>&1; then
  apt-get update >/dev/null 2>&1 || true
  apt-get download "${packages[@]}"
fi
for deb in ./*.deb; do
  dpkg -x "$deb" unpacked
done
n=0
while IFS= read -r -d '' photo; do
  case "$photo" in
    */wallpapers/*/contents/images/*)
      name="$(basename "$(dirname "$(dirname "$(dirname "$photo")")")").jpg" ;;
    *) name="$(basename "$photo")" ;;
  esac
  cp "$photo" "$dest/$name"
  n=$((n + 1))
done < <(find unpacked \( -path '*/backgrounds/*.jpg' -o -path '*/wallpapers/*/contents/images/2560x1600.jpg' \) -print0)
echo "$n photos in $dest"
