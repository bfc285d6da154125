# Experiment 1: SCP against a diffusion model trained from random initialisation with the same token budget.
#   make -f SHARE/scp/experiments/scp-vs-scratch.mk [BUDGETS="250k 1M"] [SEEDS="1 2 3"]
# Both runs see the same data, batch, schedule shape and number of masked-diffusion tokens; SCP starts from
# the AR model (the demo's, or MODEL=DIR) with the demo's per-group rates, the baseline from random weights
# with the from-scratch rate (the one the AR model was pretrained with). Table: results-scp-vs-scratch.md.
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

BUDGETS ?= 250k 1M
$(foreach b,$(BUDGETS),$(foreach s,$(SEEDS),\
  $(eval $(call train_run,e1-scp-$(b)-s$(s),$(SCP_BASE) $(SCP_GROUPS) --tokens $(b) --seed $(s),elbo choice))\
  $(eval $(call train_run,e1-scratch-$(b)-s$(s),$(SCRATCH_BASE) --tokens $(b) --seed $(s),elbo choice))))

.PHONY: results
results: results-scp-vs-scratch.md
results-scp-vs-scratch.md: $(EXP_EVALS) $(EVAL_AR)
	$(EXP_TABLE) . -t "model (tokens of masked diffusion)" -c elbo,choice,eval,time -r "AR model, before (0)=ar" \
	  $(foreach b,$(BUDGETS),-r "SCP ($(b))=$(call seeds,e1-scp-$(b))" -r "from scratch ($(b))=$(call seeds,e1-scratch-$(b))") > $@.tmp
	mv -f $@.tmp $@
	@cat $@
