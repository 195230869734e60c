#!/usr/bin/env bash
# Embedder on real music: train with configs/folder_music.yaml on ~68 % of a folder of music,
# then index the held-out test split (~27 %, whole folders never heard in training) and report
# top-1 per degradation and query length for the embedding and fingerprint engines and hybrid
# fusion (fitted on one query set, reported on another).
#
#   experiments/bench_embedder.sh MUSIC_ROOT WORK_DIR [MAX_STEPS] [QUERY_TRACKS]
#
# MUSIC_ROOT: e.g. the audio/ folder of ../shared/corpus/fetch_music.sh. Outputs go to WORK_DIR
# (keep it outside the repository); training runs in WORK_DIR/runs/folder_music. RESUME=1
# continues an interrupted run from its last.ckpt.
set -euo pipefail
root=$(realpath "$1") work=$(mkdir -p "$2" && realpath "$2") max_steps=${3:-3400}
query_tracks=${4:-150}
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python}
acr() { "$python" -m acr "$@"; }
split=(--val_fraction 0.05 --test_fraction 0.27 --split_seed 0 --group_by parent)

echo "== machine"
"$python" -m acr.runs.environment

echo "== split (the same one fit draws)"
acr data prepare folder "$root" --output "$work/split" "${split[@]}" | tail -3

echo "== training ($max_steps steps)"
cd "$work"
start=$(date +%s)
resume=()
if [ "${RESUME:-0}" = 1 ]; then  # continue an interrupted run (max_steps may differ)
  resume=(--ckpt_path last)
else
  rm -rf runs/folder_music  # a fresh run: its best checkpoint is the one evaluated
  ( while [ ! -f runs/folder_music/checkpoints/last.ckpt ]; do sleep 2; done
    echo "  first checkpoint $(( $(date +%s) - start )) s after fit started (decode cache included)" ) &
fi
/usr/bin/time -f "  fit: wall %e s, peak RSS %M KiB" "$python" -m acr fit \
  --config "$repo/configs/folder_music.yaml" --data.init_args.root "$root" \
  --trainer.max_steps "$max_steps" "${resume[@]}" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -25
model=$(ls runs/folder_music/checkpoints/best-*.ckpt | head -1)
echo "  model: $model"
"$python" - "$work/split/test.csv" data/folder_music <<'PY'
import sys, glob, pandas as pd
test = set(pd.read_csv(sys.argv[1])["track_id"])
trained = pd.concat(pd.read_csv(p) for p in glob.glob(f"{sys.argv[2]}/*/tracks.csv"))
trained = set(trained.loc[trained["split"] == "train", "track_id"])
print(f"  {len(test)} test tracks, {len(trained)} training tracks, overlap {len(test & trained)}")
assert not test & trained
PY

echo "== hybrid index of the test split"
rm -rf "$work/index"
acr index --catalog "$work/split/test.csv" --output "$work/index" --engine hybrid \
  --checkpoint "$model" 2>&1 | grep -v "indexing (" | tail -5

echo "== queries: fusion set (seed 1) and reported set (seed 2)"
for seed in 1 2; do
  [ -f "$work/queries-$seed/queries.csv" ] && { echo "  queries-$seed: kept"; continue; }
  acr data make-queries --catalog "$work/split/test.csv" --output "$work/queries-$seed" \
    --lengths_s '[1, 3, 10]' --max_tracks "$query_tracks" --seed "$seed" 2>&1 \
    | grep -v "making queries" | tail -2
done

echo "== fusion fitted on seed-1 queries, evaluation on seed-2 queries"
acr fuse --index "$work/index" --queries "$work/queries-1/queries.csv" 2>&1 | grep -v recognising
acr evaluate --index "$work/index" --queries "$work/queries-2/queries.csv" \
  --output "$work/report.json" 2>&1 | grep -v recognising
"$python" "$repo/experiments/report_cells.py" "$work/report.json"
