# Experiment 2: SCP (bidirectional attention at once) against attention-mask annealing (DiffuLLaMA's recipe:
# causal attention with each future key visible with probability step/STEPS, bidirectional from STEPS on),
# at the same token budget, from the same AR model with the same rates.
#   make -f SHARE/scp/experiments/anneal.mk [ANNEAL="30 60"] [SEEDS="1 2 3"]
# ANNEAL lists annealing lengths in optimizer steps (the demo's conversion has SCP_TOKENS / BATCH_TOKENS
# steps: 62 by default, so 30 anneals over half the run and 60 over nearly all of it). Table: results-anneal.md.
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

ANNEAL ?= 30 60
$(foreach s,$(SEEDS),\
  $(eval $(call train_run,e2-bidir-s$(s),$(SCP_BASE) $(SCP_GROUPS) --tokens $(SCP_TOKENS) --seed $(s),elbo choice))\
  $(foreach a,$(ANNEAL),\
    $(eval $(call train_run,e2-anneal$(a)-s$(s),$(SCP_BASE) $(SCP_GROUPS) --attention anneal:$(a) --tokens $(SCP_TOKENS) --seed $(s),elbo choice))))

.PHONY: results
results: results-anneal.md
results-anneal.md: $(EXP_EVALS) $(EVAL_AR)
	$(EXP_TABLE) . -t "attention during the conversion" -c elbo,choice,eval,time -r "AR model, before=ar" \
	  -r "bidirectional at once (SCP)=$(call seeds,e2-bidir)" \
	  $(foreach a,$(ANNEAL),-r "annealed over $(a) steps=$(call seeds,e2-anneal$(a))") > $@.tmp
	mv -f $@.tmp $@
	@cat $@
