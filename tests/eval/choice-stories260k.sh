#!/bin/sh
# choice-stories260k.sh: scp-eval choice on a task made here from TinyStories (skips without ../shared/assets):
# 100 items, each the first sentences of a story as context and four choices, the story's true next sentence
# and a sentence from each of three other stories (chance 25%). The imported stories260K (AR, exact
# log-likelihoods) must score well above chance; a converted checkpoint (a few masked-diffusion steps of
# scp-train) is scored with the Monte-Carlo bound and its figure reported.
. "$SCP_SRCDIR/tests/lib.sh"
need_assets models/stories260K.bin
need_assets models/tok512.bin
need_assets corpora/tinystories_val.txt
for p in scp-import scp-tokenize scp-shard scp-train scp-eval; do [ -x "$SCP_BIN/$p" ] || skip_all "$p not built"; done
A=$SCP_ASSETS

/usr/bin/python3 - "$A/corpora/tinystories_val.txt" "$TMP/tasks.jsonl" <<'PY'
import json, random, re, sys
text = open(sys.argv[1], encoding="utf-8").read()
stories = [re.split(r"(?<=[.!?])\s+", p.strip()) for p in text.split("\n\n")]
stories = [s for s in stories if 5 <= len(s) <= 20 and all(len(x) > 10 for x in s)]
rng = random.Random(2026)
rng.shuffle(stories)
with open(sys.argv[2], "w") as f:
    for i in range(100):
        s = stories[i]
        k = rng.randint(2, len(s) - 1)
        others = [stories[100 + 3 * i + j] for j in range(3)]
        choices = [" " + s[k]] + [" " + o[rng.randint(1, len(o) - 1)] for o in others]
        order = list(range(4))
        rng.shuffle(order)
        f.write(json.dumps({"context": " ".join(s[:k]), "choices": [choices[j] for j in order], "gold": order.index(0)}) + "\n")
PY
ok $? "a 4-way next-sentence task from TinyStories (100 items)"
check "import stories260K" scp-import -q "$A/models/stories260K.bin" --tokenizer "$A/models/tok512.bin" -o "$TMP/ck"
scp-eval choice -m "$TMP/ck" --tasks "$TMP/tasks.jsonl" -j 1 > "$TMP/ar.json"
ok $? "scp-eval choice (AR, summed log-likelihood)"
fig() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
diag "stories260K AR, summed: accuracy $(fig "$TMP/ar.json" accuracy) +- $(fig "$TMP/ar.json" se) (chance $(fig "$TMP/ar.json" chance))"
awk -v a="$(fig "$TMP/ar.json" accuracy)" 'BEGIN { exit !(a > 0.3) }'
ok $? "summed: above chance (short distractors are favoured by sums, as in lm-eval's acc)"
scp-eval choice -m "$TMP/ck" --tasks "$TMP/tasks.jsonl" -j 1 --norm tokens > "$TMP/arn.json"
ok $? "scp-eval choice --norm tokens (AR, per-token log-likelihood)"
acc=$(fig "$TMP/arn.json" accuracy); se=$(fig "$TMP/arn.json" se)
diag "stories260K AR, per token: accuracy $acc +- $se over $(fig "$TMP/arn.json" items) items"
awk -v a="$acc" -v s="$se" 'BEGIN { exit !(a >= 0.5 && a - 4 * s > 0.25) }'
ok $? "per-token accuracy $acc is well above chance (>= 0.5, and 4 standard errors above 0.25)"

head -c 100000 "$A/corpora/tinystories_val.txt" > "$TMP/small.txt"
scp-tokenize -q --model "$TMP/ck" --doc paragraph --bos -o "$TMP/s.tok" "$TMP/small.txt" &&
    scp-shard -q -L 64 -v 0.05 -o "$TMP/sh" "$TMP/s.tok" &&
    scp-train -q --init "$TMP/ck" --data "$TMP/sh" -o "$TMP/run" --steps 10 --lr 2e-3 --batch-tokens 512 -j 1
ok $? "a converted checkpoint: 10 steps of scp-train (mdm, bidirectional)"
scp-eval choice -m "$TMP/run/latest" --tasks "$TMP/tasks.jsonl" --samples 8 --max-items 40 --norm tokens -j 1 > "$TMP/d.json"
ok $? "scp-eval choice (diffusion bound, 8 samples, 40 items, per token)"
dacc=$(fig "$TMP/d.json" accuracy)
[ "$(fig "$TMP/d.json" mode)" = diffusion ] && awk -v a="$dacc" 'BEGIN { exit !(a >= 0 && a <= 1) }'
ok $? "converted checkpoint (diffusion): accuracy $dacc +- $(fig "$TMP/d.json" se) (reported)"
done_testing
