#!/bin/sh
# layers.sh: the include graph of lib/ follows one order of layers, lowest first:
#
#   core      errors, I/O, JSON, RNG, dtypes, the command-line conventions
#   formats   file formats: safetensors, GGUF, config.json, checkpoints, token streams, shards, masked examples
#   tok       tokenizers
#   model     the decoder driver and its backends (cpu/, cuda/)
#   data      text input, shard sets, the noising process, batches for the model, sequence sources
#   dist      data parallelism over MPI/NCCL
#   eval      losses, multiple choice, sampling
#   train     scp-train's engine
#   convert   import and export of models
#
# A file of lib/LAYER/ may include headers of its own layer and of the layers before it, never of a layer after
# it; a *_internal.h header only from its own folder (model/cuda/cuda_internal.h from lib/model/cuda/ only).
# bin/ and bench/ use the public headers only. A new folder of lib/ must be given its place here.
. "${SCP_SRCDIR:-$(dirname "$0")/../..}/tests/lib.sh"

LAYERS="core formats tok model data dist eval train convert"

# violations ROOT: one line per include that breaks the rules, for the tree ROOT (a copy of lib/).
violations() {
    find "$1" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) | LC_ALL=C sort |
        xargs awk -v root="$1/" -v layers="$LAYERS" '
        BEGIN { n = split(layers, l, " "); for (i = 1; i <= n; i++) rank[l[i]] = i }
        FNR == 1 {
            rel = substr(FILENAME, length(root) + 1)
            layer = rel; sub(/\/.*/, "", layer)
            dir = rel; sub(/\/[^\/]*$/, "", dir)
            if (!(layer in rank)) print rel ": folder lib/" layer " has no place in the layer order (tests/core/layers.sh)"
        }
        /^[ \t]*#[ \t]*include[ \t]*"/ {
            inc = $0; sub(/^[^"]*"/, "", inc); sub(/".*/, "", inc)
            if (index(inc, "/") == 0) next          # config.h, or a header beside the file
            il = inc; sub(/\/.*/, "", il)
            idir = inc; sub(/\/[^\/]*$/, "", idir)
            if (!(il in rank)) print rel ":" FNR ": includes " inc ", of no layer"
            else if ((layer in rank) && rank[il] > rank[layer])
                print rel ":" FNR ": includes " inc ": layer " il " is above layer " layer
            if (inc ~ /_internal\.h$/ && idir != dir) print rel ":" FNR ": includes " inc ", internal to lib/" idir
        }'
}

# The checker finds what it is meant to find: a tree with one of each fault, and one without.
mkdir -p "$TMP/t/core" "$TMP/t/data" "$TMP/t/model/cuda" "$TMP/t/extra"
printf '#include "core/error.h"\n#include "train/opts.h"\n' >"$TMP/t/data/batch.h"
printf '#include "model/model.h"\n#include "model/cuda/cuda_internal.h"\n' >"$TMP/t/model/moe.c"
printf '#include "model/cuda/cuda_internal.h"\n#include "config.h"\n#include "tiles.h"\n' >"$TMP/t/model/cuda/norm.cu"
printf '#include "core/error.h"\n' >"$TMP/t/extra/x.c"
printf '#include "core/json.h"\n#include "nowhere/x.h"\n' >"$TMP/t/core/io.c"
violations "$TMP/t" >"$TMP/found"
grep -q '^data/batch.h:2: includes train/opts.h: layer train is above layer data$' "$TMP/found" &&
grep -q '^model/moe.c:2: includes model/cuda/cuda_internal.h, internal to lib/model/cuda$' "$TMP/found" &&
grep -q '^extra/x.c: folder lib/extra has no place' "$TMP/found" &&
grep -q '^core/io.c:2: includes nowhere/x.h, of no layer$' "$TMP/found" &&
[ "$(wc -l <"$TMP/found")" -eq 4 ]
r=$?
ok $r "the checker finds an upward include, another folder's internal header, an unplaced folder and a header of no layer, and nothing else"
[ $r -eq 0 ] || sed 's/^/#   /' "$TMP/found"

violations "$SCP_SRCDIR/lib" >"$TMP/lib.txt"
[ ! -s "$TMP/lib.txt" ]
ok $? "lib/ follows the layer order ($LAYERS)"
sed 's/^/#   /' "$TMP/lib.txt"
n=$(find "$SCP_SRCDIR/lib" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' \) | wc -l)
[ "$n" -gt 100 ]
ok $? "and the check saw the library ($n files)"

grep -n '#[ \t]*include[ \t]*"[^"]*_internal\.h"' "$SCP_SRCDIR"/bin/*.c "$SCP_SRCDIR"/bench/*.c "$SCP_SRCDIR"/bench/*/*.c \
    >"$TMP/progs.txt" 2>/dev/null
[ ! -s "$TMP/progs.txt" ]
ok $? "the programs and benchmarks include no *_internal.h"
sed 's/^/#   /' "$TMP/progs.txt"

done_testing
