#!/usr/bin/env bash
# Real recorded speech for the field suite's crowds (acr data make-queries --suite field
# --speech_dir DEST): the prompts of Asterisk's core sounds, five voices (US English, Mexican
# Spanish, Canadian French, Italian, Russian), ~2,800 utterances at 8 kHz, from Debian's
# archive (~100 MB of .deb). Nothing is installed: the packages are downloaded and unpacked.
# Licence: CC-BY-SA-3.0 (see DEST/copyright/); keep the recordings out of the repository.
#
#   experiments/fetch_speech.sh /work/speech
set -euo pipefail
dest=${1:?usage: fetch_speech.sh DEST}
mkdir -p "$dest/debs" "$dest/copyright"
cd "$dest/debs"
packages=(asterisk-core-sounds-{en,es,fr,it,ru}-wav)
apt-get download "${packages[@]}" >/dev/null 2>&1 || {
    apt-get update >/dev/null && apt-get download "${packages[@]}" >/dev/null
}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for deb in ./*.deb; do dpkg -x "$deb" "$scratch"; done
cp -r "$scratch"/usr/share/asterisk/sounds/. "$dest/"
for doc in "$scratch"/usr/share/doc/*; do cp "$doc/copyright" "$dest/copyright/$(basename "$doc")"; done
echo "fetch_speech: $(find "$dest" -name '*.wav' | wc -l) recordings in $dest"
