# Experiment 5: the gradient noise scale B_simple (McCandlish et al. 2018) of the next-token objective and of
# the masked-diffusion objective on the same model, data and batch, to see whether the diffusion objective
# wants larger batches (RND1's claim of a larger critical batch size). scp-train measures B_simple at every
# step from its first micro-batch against the whole batch (scp-run(5), noise_scale), so every run here takes
# NS_MICRO sequences per micro-batch: BATCH_TOKENS / SEQ_LEN / NS_MICRO micro-batches per step (8 by default).
# From the AR model (the demo's ar/latest, or MODEL=DIR):
#   ar    next-token training continued, causal attention;
#   scp   the SCP conversion: masked diffusion, bidirectional attention at once, the noise levels stratified
#         over the batch (the default of scp-train);
#   scpu  the same with independent noise levels (--t-sampler uniform: the estimator's own assumption of
#         independent examples; stratified levels steady the whole batch's gradient, which can raise the
#         estimate, scp-train(1)).
# From random weights (the AR model's shape), the same three objectives: ar0, scp0 (masked diffusion from
# scratch) and scpu0. The rates are the demo's conversion's (lr SCP_LR, attention and MLP multipliers) from
# the AR model and the from-scratch rate SCRATCH_LR from random weights, the same for both objectives.
#   make -f SHARE/scp/experiments/noise-scale.mk [NS_TOKENS=500k] [NS_MICRO=4] [NS_SEEDS="1 2"]
# Figures (scp-exp-table): B_simple over the first and the last half of each run's steps (the ratio of the
# sums of the steps' raw estimates), over the batch, the EMA that scp-train logs at the last step, per group;
# rows of the ratios diffusion / next-token, seed by seed (the same seed: the same batches).
# Table: results-noise-scale.md. Plots: plots/noise-scale-ar-init.png and plots/noise-scale-random-init.png.
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

NS_TOKENS ?= 500k
NS_MICRO ?= 4
NS_SEEDS ?= 1 2
NS_COMMON = --batch-tokens $(BATCH_TOKENS) --micro-batch $(NS_MICRO) --tokens $(NS_TOKENS) --warmup $(SCP_WARMUP) \
	--schedule cosine
NS_FROM_AR = --init $(AR_CKPT) --lr $(SCP_LR) --min-lr $(SCP_MIN_LR) $(SCP_GROUPS) $(NS_COMMON)
NS_FROM_RANDOM = $(RANDOM_INIT) --lr $(SCRATCH_LR) --min-lr $(SCRATCH_MIN_LR) $(NS_COMMON)
NS_AR = --objective ar --attention causal
NS_MDM = --objective mdm --attention bidirectional
NS_MDM_UNIFORM = $(NS_MDM) --t-sampler uniform
$(foreach s,$(NS_SEEDS),\
  $(eval $(call train_run,e5-ar-s$(s),$(NS_FROM_AR) $(NS_AR) --seed $(s),))\
  $(eval $(call train_run,e5-scp-s$(s),$(NS_FROM_AR) $(NS_MDM) --seed $(s),))\
  $(eval $(call train_run,e5-scpu-s$(s),$(NS_FROM_AR) $(NS_MDM_UNIFORM) --seed $(s),))\
  $(eval $(call train_run,e5-ar0-s$(s),$(NS_FROM_RANDOM) $(NS_AR) --seed $(s),))\
  $(eval $(call train_run,e5-scp0-s$(s),$(NS_FROM_RANDOM) $(NS_MDM) --seed $(s),))\
  $(eval $(call train_run,e5-scpu0-s$(s),$(NS_FROM_RANDOM) $(NS_MDM_UNIFORM) --seed $(s),)))

ns_runs = $(subst $(space),$(comma),$(foreach s,$(NS_SEEDS),e5-$(1)-s$(s)))
NS_DONE = $(foreach s,$(NS_SEEDS),$(foreach r,ar scp scpu ar0 scp0 scpu0,runs/e5-$(r)-s$(s).done))
NS_WHOLE = noise-early,noise,noise-batch,noise-ema,loss,time
NS_GROUPS = noise-embed,noise-attn,noise-mlp,noise-norm
# $(call ns_rows,SUFFIX): the rows of one starting point (SUFFIX empty: the AR model; 0: random weights).
ns_rows = -r "next-token=$(call ns_runs,ar$(1))" -r "masked diffusion=$(call ns_runs,scp$(1))" \
	-r "masked diffusion, t uniform=$(call ns_runs,scpu$(1))" \
	-R "diffusion / next-token=$(call ns_runs,scp$(1))/$(call ns_runs,ar$(1))" \
	-R "diffusion, t uniform / next-token=$(call ns_runs,scpu$(1))/$(call ns_runs,ar$(1))"

.PHONY: results noise-plots
results: results-noise-scale.md noise-plots
results-noise-scale.md: $(NS_DONE)
	{ echo "From the AR model ($(AR_CKPT)), $(NS_TOKENS) tokens in batches of $(BATCH_TOKENS) ($(NS_MICRO) sequences per micro-batch):"; \
	  echo; $(EXP_TABLE) . -t "objective" -c $(NS_WHOLE) $(call ns_rows,); \
	  echo; $(EXP_TABLE) . -t "objective (per group, EMA at the end)" -c $(NS_GROUPS) $(call ns_rows,); \
	  echo; echo "From random weights, the same shape, data and batch:"; \
	  echo; $(EXP_TABLE) . -t "objective" -c $(NS_WHOLE) $(call ns_rows,0); \
	  echo; $(EXP_TABLE) . -t "objective (per group, EMA at the end)" -c $(NS_GROUPS) $(call ns_rows,0); } > $@.tmp
	mv -f $@.tmp $@
	@cat $@

# The noise scale (the EMA scp-train logs) against the tokens seen, every seed, one colour per objective.
ns_plot_runs = $(foreach r,$(1),$(foreach s,$(NS_SEEDS),-l "$(NS_LABEL_$(r))")) \
	$(foreach r,$(1),$(foreach s,$(NS_SEEDS),runs/e5-$(r)-s$(s)))
NS_LABEL_ar = next-token
NS_LABEL_scp = masked diffusion
NS_LABEL_scpu = masked diffusion, t uniform
NS_LABEL_ar0 = next-token
NS_LABEL_scp0 = masked diffusion
NS_LABEL_scpu0 = masked diffusion, t uniform
noise-plots: plots/noise-scale-ar-init.png plots/noise-scale-random-init.png
plots/noise-scale-ar-init.png: $(NS_DONE) $(call prog,$(PLOT))
	@mkdir -p plots
	$(PLOT) -p noise --no-groups --size 720,440 -t "B_simple from the AR model: next-token vs masked diffusion" \
	  -o $@ $(call ns_plot_runs,ar scp scpu)
plots/noise-scale-random-init.png: $(NS_DONE) $(call prog,$(PLOT))
	@mkdir -p plots
	$(PLOT) -p noise --no-groups --size 720,440 -t "B_simple from random weights: next-token vs masked diffusion" \
	  -o $@ $(call ns_plot_runs,ar0 scp0 scpu0)
