# Experiment 3: per-group learning rates (attention at the base rate, MLP slower) against one uniform rate:
# the diffusion loss reached and the facts kept (recall by multiple choice), with a sweep of the MLP
# multiplier (1 is the uniform rate; 0 freezes the MLPs, where the facts are thought to live).
#   make -f SHARE/scp/experiments/lr-groups.mk [MLP_MULTS="0 0.03 0.1 0.3 1"] [ATTN_MULT=1] [SEEDS="1 2 3"]
# Table: results-lr-groups.md (results-lr-groups-attnX.md for ATTN_MULT=X other than 1).
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

MLP_MULTS ?= 0 0.03 0.1 0.3 1
ATTN_MULT ?= 1
$(foreach m,$(MLP_MULTS),$(foreach s,$(SEEDS),\
  $(eval $(call train_run,e3-attn$(ATTN_MULT)-mlp$(m)-s$(s),$(SCP_BASE) --lr-attn $(ATTN_MULT) --lr-mlp $(m) --tokens $(SCP_TOKENS) --seed $(s),elbo choice))))

.PHONY: results
LRG_RESULTS = results-lr-groups$(if $(filter-out 1,$(ATTN_MULT)),-attn$(ATTN_MULT)).md
results: $(LRG_RESULTS)
$(LRG_RESULTS): $(EXP_EVALS) $(EVAL_AR)
	$(EXP_TABLE) . -t "rates: attention x$(ATTN_MULT), MLP x" -c elbo,choice,eval,time -r "AR model, before=ar" \
	  $(foreach m,$(MLP_MULTS),-r "$(m)$(if $(filter 1,$(ATTN_MULT)),$(if $(filter 1,$(m)), (uniform)))=$(call seeds,e3-attn$(ATTN_MULT)-mlp$(m))") > $@.tmp
	mv -f $@.tmp $@
	@cat $@
