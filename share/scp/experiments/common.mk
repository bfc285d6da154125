# common.mk: what the experiment makefiles share. It includes the demo's makefile, so the corpus, the
# tokenizer, the shards and the AR model are the demo's (demo.conf, or CONF=FILE; MODEL=DIR for an imported
# AR model), made once in the working directory and shared by every experiment run there. Each experiment
# then declares its runs with $(call train_run,...) and its table with scp-exp-table.
EXP_HERE := $(dir $(lastword $(MAKEFILE_LIST)))
include $(EXP_HERE)../demo/Makefile
.DEFAULT_GOAL := results
# The experiments start from the AR run's last checkpoint, as their result tables were made (the demo's own
# "before" model is its best on val, ar/best).
ifeq ($(strip $(MODEL)),)
AR_CKPT = ar/latest
endif

EXP_TABLE = $(T)scp-exp-table
# Options every experiment run shares; each run adds its objective, budget, batch, rates and seed.
EXP_TRAIN = --data data/shards --eval-every $(EVAL_EVERY) --eval-seqs $(EVAL_SEQS) $(THREADS_OPT) --force
SEEDS ?= 1 2 3
# The SCP recipe of the demo, without its budget, group rates and seed (experiments vary one thing at a time
# from here), and the same budget from random weights (RANDOM_INIT: the AR model's shape and tokenizer).
SCP_BASE = --init $(AR_CKPT) --objective mdm --attention bidirectional --batch-tokens $(BATCH_TOKENS) --lr $(SCP_LR) \
	--min-lr $(SCP_MIN_LR) --warmup $(SCP_WARMUP) --schedule cosine
SCP_GROUPS = --lr-attn $(SCP_LR_ATTN) --lr-mlp $(SCP_LR_MLP)
RANDOM_INIT = $(if $(strip $(MODEL)),--init $(MODEL) --init-random,--init random:base/config.json)
SCRATCH_BASE = $(RANDOM_INIT) --objective mdm --attention bidirectional --batch-tokens $(BATCH_TOKENS) \
	--lr $(SCRATCH_LR) --min-lr $(SCRATCH_MIN_LR) --warmup $(SCP_WARMUP) --schedule cosine

# $(call train_run,NAME,OPTIONS,EVALS): scp-train OPTIONS into runs/NAME (runs/NAME.done when complete, its
# seconds in time/run-NAME), then the evaluations EVALS of its last checkpoint, of: elbo (val diffusion
# bound), ppl (val next-token NLL), choice (fact recall; by the bound for diffusion checkpoints). The run
# depends on the AR model only when OPTIONS start from it.
define train_run
$(call param,run-$(1),$(2) $(EXP_TRAIN))
runs/$(1).done: $(if $(findstring $(AR_CKPT),$(2)),$(AR_DEP)) base/config.json data/shards/manifest.json .params/run-$(1) $(call prog,$(TRAIN))
	$$(call say,run $(1): scp-train $(2))
	@rm -f $$@ && mkdir -p runs
	$$(call timed,run-$(1),$(TRAIN) $(2) -o runs/$(1) $(EXP_TRAIN))
	@touch $$@
EXP_EVALS += $(foreach e,$(3),eval/run-$(1)-$(e).json)
endef
eval/run-%-elbo.json: runs/%.done .params/elbo
	@mkdir -p eval
	$(EVAL) elbo -m runs/$*/latest -d data/shards $(ELBO_OPTS) > $@
eval/run-%-ppl.json: runs/%.done
	@mkdir -p eval
	$(EVAL) ppl -m runs/$*/latest -d data/shards $(THREADS_OPT) > $@
eval/run-%-choice.json: runs/%.done $(FACTS) .params/choice
	@mkdir -p eval
	$(EVAL) choice -m runs/$*/latest --tasks $(FACTS) $(CHOICE_OPTS) > $@

# $(call seeds,PREFIX): the run names PREFIX-s1,PREFIX-s2,... of SEEDS, comma-separated (an scp-exp-table row).
comma := ,
empty :=
space := $(empty) $(empty)
seeds = $(subst $(space),$(comma),$(foreach s,$(SEEDS),$(1)-s$(s)))
