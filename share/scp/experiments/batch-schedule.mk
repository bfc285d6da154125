# Experiment 6: batch-size schedules in the SCP conversion at a fixed token budget: the demo's fixed batch
# against a linear ramp up to it and the adaptive schedule that keeps the batch at K times the measured noise
# scale (scp-train --batch-schedule; the rates scaled by sqrt(B / B0), B0 the fixed batch). Every run sees
# BSCH_TOKENS tokens from the AR model with the SCP recipe of the demo (its rates, group multipliers, cosine to
# its final rate), with the warmup of the fixed run expressed in tokens for the scheduled ones.
#   make -f SHARE/scp/experiments/batch-schedule.mk [BSCH_TOKENS=250000] [BSCH_SEEDS="1 2"]
#        [BSCH_RAMP=linear:1024:4096:125000] [BSCH_ADAPTIVE=adaptive:2:1024:16384] [BSCH_MICRO=4]
# Figures: the val diffusion bound, the final train loss, the steps and the last batch. Table:
# results-batch-schedule.md.
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

BSCH_TOKENS ?= 250000
BSCH_SEEDS ?= 1 2
BSCH_MICRO ?= 4
BSCH_RAMP ?= linear:1024:$(BATCH_TOKENS):125000
BSCH_ADAPTIVE ?= adaptive:2:1024:16384
# The fixed run's warmup of SCP_WARMUP steps of BATCH_TOKENS, in tokens for the scheduled runs (whose warmup
# counts tokens).
bsch_warmup_tokens = $(shell echo $$(( $(SCP_WARMUP) * $(BATCH_TOKENS) )))
BSCH_OPTS = --init $(AR_CKPT) --objective mdm --attention bidirectional --batch-tokens $(BATCH_TOKENS) \
	--micro-batch $(BSCH_MICRO) --lr $(SCP_LR) --min-lr $(SCP_MIN_LR) --schedule cosine $(SCP_GROUPS) \
	--tokens $(BSCH_TOKENS)
$(foreach s,$(BSCH_SEEDS),\
  $(eval $(call train_run,e6-fixed-s$(s),$(BSCH_OPTS) --warmup $(SCP_WARMUP) --seed $(s),elbo))\
  $(eval $(call train_run,e6-ramp-s$(s),$(BSCH_OPTS) --warmup $(bsch_warmup_tokens) --batch-schedule $(BSCH_RAMP) --seed $(s),elbo))\
  $(eval $(call train_run,e6-adaptive-s$(s),$(BSCH_OPTS) --warmup $(bsch_warmup_tokens) --batch-schedule $(BSCH_ADAPTIVE) --seed $(s),elbo)))

bsch_seeds = $(subst $(space),$(comma),$(foreach s,$(BSCH_SEEDS),$(1)-s$(s)))
# Per run: its steps, its last batch and noise scale (metrics.jsonl's last step line).
bsch_steps = for r in $(foreach s,$(BSCH_SEEDS),$(1)-s$(s)); do \
	  grep '"loss"' runs/$$r/metrics.jsonl | sed -n '$$s/.*"step":\([0-9]*\).*"batch_tokens":\([0-9]*\).*"noise_scale":\([^,]*\).*/  \1 steps, last batch \2 tokens, noise scale \3/p' | \
	  sed "s/^/- $$r:/"; done
.PHONY: results
results: results-batch-schedule.md
results-batch-schedule.md: $(EXP_EVALS)
	{ echo "SCP conversion, $(BSCH_TOKENS) tokens, base batch $(BATCH_TOKENS):"; echo; \
	  $(EXP_TABLE) . -t "batch" -c elbo,loss,time -r "fixed $(BATCH_TOKENS)=$(call bsch_seeds,e6-fixed)" \
	    -r "$(BSCH_RAMP)=$(call bsch_seeds,e6-ramp)" -r "$(BSCH_ADAPTIVE)=$(call bsch_seeds,e6-adaptive)"; \
	  echo; $(call bsch_steps,e6-fixed); $(call bsch_steps,e6-ramp); $(call bsch_steps,e6-adaptive); } > $@.tmp
	mv -f $@.tmp $@
	@cat $@

# The batch of every step against the tokens seen (with K x the noise scale the adaptive runs aim at), and the
# training and validation losses, every seed, one colour per schedule.
BSCH_KINDS = fixed ramp adaptive
BSCH_LABEL_fixed = fixed $(BATCH_TOKENS)
BSCH_LABEL_ramp = $(BSCH_RAMP)
BSCH_LABEL_adaptive = $(BSCH_ADAPTIVE)
bsch_plot_runs = $(foreach r,$(BSCH_KINDS),$(foreach s,$(BSCH_SEEDS),-l "$(BSCH_LABEL_$(r))")) \
	$(foreach r,$(BSCH_KINDS),$(foreach s,$(BSCH_SEEDS),runs/e6-$(r)-s$(s)))
BSCH_DONE = $(foreach r,$(BSCH_KINDS),$(foreach s,$(BSCH_SEEDS),runs/e6-$(r)-s$(s).done))
.PHONY: schedule-plots
results: schedule-plots
schedule-plots: plots/batch-schedule-batch.png plots/batch-schedule-loss.png
plots/batch-schedule-batch.png: $(BSCH_DONE) $(call prog,$(PLOT))
	@mkdir -p plots
	$(PLOT) -p batch --size 720,440 -t "Batch per step: fixed, linear ramp, adaptive" -o $@ $(bsch_plot_runs)
plots/batch-schedule-loss.png: $(BSCH_DONE) $(call prog,$(PLOT))
	@mkdir -p plots
	$(PLOT) --size 720,440 -t "SCP conversion losses: fixed, linear ramp, adaptive" -o $@ $(bsch_plot_runs)
