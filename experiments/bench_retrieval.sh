#!/usr/bin/env bash
# Retrieval benchmark on a real catalog: index speed and memory per engine, hybrid accuracy per
# bucket with fusion fitted on separate validation queries, recognition latency, kill + resume.
#
#   experiments/bench_retrieval.sh CATALOG MODEL_CKPT WORK_DIR [SPEED_TRACKS] [QUERY_TRACKS]
#
# CATALOG: a folder or CSV/JSONL (e.g. the corpus from ../shared/corpus/fetch_music.sh);
# MODEL_CKPT: an `acr fit` checkpoint, trained on other music than CATALOG. Outputs go to
# WORK_DIR (keep it outside the repository).
set -euo pipefail
catalog=$1 model=$2 work=$3 speed_tracks=${4:-60} query_tracks=${5:-150}
python=${PYTHON:-python}
acr() { "$python" -m acr "$@"; }
mkdir -p "$work"

echo "== machine"
"$python" -m acr.runs.environment

echo "== index speed and peak memory per engine ($speed_tracks tracks)"
"$python" - "$catalog" "$speed_tracks" "$work/speed_catalog.csv" <<'EOF'
import sys
from acr.data.catalogs import read_catalog
from acr.data.manifests import write_table
tracks = read_catalog(sys.argv[1])
write_table(tracks.sample(n=min(int(sys.argv[2]), len(tracks)), random_state=0), sys.argv[3])
EOF
for engine in fingerprint embedding melody; do
  rm -rf "$work/speed-$engine"
  /usr/bin/time -f "  wall %e s, peak RSS %M KiB (main process)" \
    "$python" -m acr index --catalog "$work/speed_catalog.csv" --output "$work/speed-$engine" \
    --engine "$engine" --checkpoint "$model" 2>&1 | grep -v "indexing (" | tail -6
done

echo "== hybrid index of the whole catalog"
rm -rf "$work/hybrid"
acr index --catalog "$catalog" --output "$work/hybrid" --engine hybrid --checkpoint "$model" \
  2>&1 | grep -v "indexing (" | tail -5

echo "== queries: validation (fusion) and test (reported) sets from different seeds"
acr data make-queries --catalog "$catalog" --output "$work/queries-validation" --lengths_s '[1, 3, 10]' \
  --max_tracks "$query_tracks" --seed 1 2>&1 | grep -v "making queries" | tail -2
# Hums are where the engines disagree most: fusion sees three times as many of them.
acr data make-queries --catalog "$catalog" --output "$work/queries-validation-hums" \
  --lengths_s '[1, 3, 10]' --degradations '[humming_like]' --per_track 2 --max_tracks "$query_tracks" \
  --seed 3 2>&1 | grep -v "making queries" | tail -2
acr data make-queries --catalog "$catalog" --output "$work/queries-test" --lengths_s '[1, 3, 10]' \
  --max_tracks "$query_tracks" --seed 2 2>&1 | grep -v "making queries" | tail -2

echo "== fusion fitted on the validation queries"
acr fuse --index "$work/hybrid" --queries \
  "[$work/queries-validation/queries.csv, $work/queries-validation-hums/queries.csv]" 2>&1 \
  | grep -v recognising

echo "== evaluation on the test queries"
acr evaluate --index "$work/hybrid" --queries "$work/queries-test/queries.csv" \
  --output "$work/report-test.json" 2>&1 | grep -v recognising

echo "== answers to the test queries (JSONL: ranked tracks, scores, offsets), for comparing runs"
acr recognize --index "$work/hybrid" --queries "$work/queries-test/queries.csv" \
  --output "$work/answers-test.jsonl" 2>&1 | grep -v recognising

echo "== latency, 3-s queries, index loaded"
"$python" experiments/bench_latency.py --index "$work/hybrid" \
  --queries "$work/queries-test/queries.csv" --count 200

echo "== SIGKILL midway, then --resume (fingerprint engine)"
rm -rf "$work/killed" "$work/uninterrupted"
acr index --catalog "$catalog" --output "$work/uninterrupted" --save_every 50 2>&1 | tail -4
# Not through the acr() function: $! must be the indexing process, not a subshell around it.
"$python" -m acr index --catalog "$catalog" --output "$work/killed" --save_every 50 \
  >/dev/null 2>&1 &
pid=$!
until [ -f "$work/killed/index.json" ]; do sleep 0.5; done
sleep 3
kill -9 "$pid" || true
wait "$pid" 2>/dev/null || true
echo "  killed after $(grep -o '"processed": [0-9]*' "$work/killed/index.json") tracks"
acr index --catalog "$catalog" --output "$work/killed" --resume true --save_every 50 2>&1 | tail -4
"$python" - "$work/uninterrupted" "$work/killed" <<'EOF'
import sys
from acr.retrieval.store import IndexState, load_engines
states = [IndexState.read(__import__("pathlib").Path(d)) for d in sys.argv[1:]]
tracks = [sorted(load_engines(d)["fingerprint"].track_ids) for d in sys.argv[1:]]
for name, state in zip(("uninterrupted", "killed+resumed"), states):
    print(f"  {name}: tracks {state.tracks}, skipped {state.skipped}, items {state.items}")
print("  same track set:", tracks[0] == tracks[1], "; same item count:",
      states[0].items == states[1].items)
EOF
