# Experiment 4: the batch size at a fixed token budget, for the masked-diffusion objective and the next-token
# objective, both from random weights (the AR model's shape), to see whether the diffusion objective wants
# larger batches (RND1's critical-batch-size claim). Every run sees BS_TOKENS tokens; the rate is the same
# for every batch size (not re-tuned per size) with a warmup of a twentieth of the steps and a cosine decay.
#   make -f SHARE/scp/experiments/batch-size.mk [BATCHES="1024 2048 4096 8192 16384"] [BS_TOKENS=300000]
#        [BS_SEEDS="1 2"]
# Figures: the val diffusion bound (mdm) and the val next-token NLL (ar). Table: results-batch-size.md.
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

BATCHES ?= 1024 2048 4096 8192 16384
BS_TOKENS ?= 300000
BS_SEEDS ?= 1 2
BS_LR ?= 3e-3
bs_warmup = $(shell echo $$(( ($(BS_TOKENS) / $(1) + 19) / 20 )))
BS_OPTS = $(RANDOM_INIT) --tokens $(BS_TOKENS) --lr $(BS_LR) --min-lr 0 --schedule cosine
$(foreach b,$(BATCHES),$(foreach s,$(BS_SEEDS),\
  $(eval $(call train_run,e4-mdm-b$(b)-s$(s),$(BS_OPTS) --objective mdm --batch-tokens $(b) --warmup $(call bs_warmup,$(b)) --seed $(s),elbo))\
  $(eval $(call train_run,e4-ar-b$(b)-s$(s),$(BS_OPTS) --objective ar --batch-tokens $(b) --warmup $(call bs_warmup,$(b)) --seed $(s),ppl))))

bs_seeds = $(subst $(space),$(comma),$(foreach s,$(BS_SEEDS),$(1)-s$(s)))
.PHONY: results
results: results-batch-size.md
results-batch-size.md: $(EXP_EVALS)
	{ echo "Masked diffusion (val diffusion bound), $(BS_TOKENS) tokens:"; echo; \
	  $(EXP_TABLE) . -t "batch (tokens)" -c elbo,loss,time $(foreach b,$(BATCHES),-r "$(b)=$(call bs_seeds,e4-mdm-b$(b))"); \
	  echo; echo "Next-token (val NLL), $(BS_TOKENS) tokens:"; echo; \
	  $(EXP_TABLE) . -t "batch (tokens)" -c ppl,loss,time $(foreach b,$(BATCHES),-r "$(b)=$(call bs_seeds,e4-ar-b$(b))"); } > $@.tmp
	mv -f $@.tmp $@
	@cat $@
