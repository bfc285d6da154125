#!/bin/sh
# train-srun.sh: data-parallel scp-train started by Slurm: `srun -n 2 --mpi=pmix` on a private one-node
# cluster matches one process with the same --batch-tokens for 20 steps (losses, final weights and AdamW moments
# to 1e-5 relative), on the jobs tests/dist/train-mpi.py runs with mpirun; only rank 0 writes; without PMI the job
# stops instead of running two single-process copies. The test starts its own munged, slurmctld and slurmd in
# $TMP (own key, socket, ports, state and logs; the system's Slurm and munge are never used) and stops them
# whatever happens. Skips (77) without Slurm's daemons and srun, without root (slurmd runs as root) or without
# MPI in the build.
. "$SCP_SRCDIR/tests/lib.sh"

PATH="$PATH:/usr/sbin:/sbin"
for p in scp-train scp-shard; do [ -x "$SCP_BIN/$p" ] || skip_all "$p not built"; done
"$SCP_BIN/scp-train" --version | grep -q 'mpi=yes' || skip_all "scp-train built without MPI (features: mpi=no)"
for c in munged munge slurmctld slurmd srun sinfo squeue scancel; do
    command -v $c >/dev/null 2>&1 || skip_all "no $c (install slurmctld slurmd slurm-client munge)"
done
[ "$(id -u)" -eq 0 ] || skip_all "slurmd must run as root"
/usr/bin/python3 -c 'import numpy' 2>/dev/null || skip_all "no /usr/bin/python3 with numpy"

# Nothing from an enclosing Slurm job or cluster may reach our srun.
for v in $(env | sed -n 's/^\(SLURM_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
unset SCP_DIST
C="$TMP/cluster"
SLURM_CONF="$C/slurm.conf"
export SLURM_CONF
# The OpenMPI transports a one-node job needs, with no network probing and no cross-memory attach (containers).
OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader,tcp}
OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
export OMPI_MCA_btl OMPI_MCA_btl_vader_single_copy_mechanism

# Stop what we started, by PID: jobs first (their slurmstepd are not our children), then the daemons.
pids=""
stop_cluster() {
    if [ -n "$pids" ]; then
        timeout 5 squeue -h -o %i 2>/dev/null | while read -r j; do timeout 5 scancel "$j" 2>/dev/null; done
        for p in $pids; do kill "$p" 2>/dev/null; done
        n=0
        while [ $n -lt 50 ]; do
            alive=""
            for p in $pids; do   # a daemon that exited stays a zombie until wait: it counts as gone
                case $(ps -o stat= -p "$p" 2>/dev/null) in ''|Z*) ;; *) alive="$alive $p" ;; esac
            done
            [ -z "$alive" ] && break
            sleep 0.1; n=$((n + 1))
        done
        for p in $alive; do kill -9 "$p" 2>/dev/null; done
        wait 2>/dev/null
        pids=""
    fi
}
trap 'stop_cluster; rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM HUP
skip_cluster() { stop_cluster; skip_all "$@"; }
logs() { for f in "$C"/log/*; do echo "# --- $f"; tail -15 "$f" | sed 's/^/#   /'; done; }

# ---- the private cluster ----
mkdir -p "$C/munge" "$C/state" "$C/spool" "$C/log"
chmod 711 "$C/munge"
if command -v mungekey >/dev/null 2>&1; then mungekey -c -k "$C/munge/munge.key" 2>/dev/null
else dd if=/dev/urandom of="$C/munge/munge.key" bs=1024 count=1 2>/dev/null; fi
chmod 600 "$C/munge/munge.key"
munged -F --force --key-file="$C/munge/munge.key" --socket="$C/munge/sock" --pid-file="$C/munge/pid" \
    --log-file="$C/log/munged.log" --seed-file="$C/munge/seed" >"$C/log/munged.out" 2>&1 &
pids="$!"
# Two free TCP ports for slurmctld and slurmd (never the system's 6817/6818).
ports=$(/usr/bin/python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')
# shellcheck disable=SC2086
set -- $ports
H=$(hostname -s)
: >"$C/plugstack.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=scptest
SlurmctldHost=$H(127.0.0.1)
SlurmctldPort=$1
SlurmdPort=$2
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$C/munge/sock
CredType=cred/munge
StateSaveLocation=$C/state
SlurmdSpoolDir=$C/spool
SlurmctldPidFile=$C/slurmctld.pid
SlurmdPidFile=$C/slurmd.pid
SlurmctldLogFile=$C/log/slurmctld.log
SlurmdLogFile=$C/log/slurmd.log
PlugStackConfig=$C/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$H NodeAddr=127.0.0.1 CPUs=$(nproc)
PartitionName=scp Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF
n=0
while [ ! -S "$C/munge/sock" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
slurmctld -D -i -f "$SLURM_CONF" >"$C/log/slurmctld.out" 2>&1 &
pids="$pids $!"
slurmd -D -f "$SLURM_CONF" -N "$H" >"$C/log/slurmd.out" 2>&1 &
pids="$pids $!"
n=0
while [ "$(sinfo -h -o %T 2>/dev/null)" != idle ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
[ "$(sinfo -h -o %T 2>/dev/null)" = idle ]
ok $? "private one-node cluster (munged, slurmctld, slurmd in \$TMP, ports $1 $2) is up"
[ "$(sinfo -h -o %T 2>/dev/null)" = idle ] || { logs; done_testing; }
srun --mpi=list 2>&1 | grep -q pmix || skip_cluster "this Slurm has no PMIx plugin (srun --mpi=list)"
# srun -n 2 runs both tasks on the node, in one step, with its rank and size (the PMIx server's environment).
# shellcheck disable=SC2016
srun -n 2 -O sh -c 'echo $SLURM_PROCID/$SLURM_NTASKS' >"$TMP/hello" 2>"$TMP/hello.err"
[ "$(sort "$TMP/hello" | tr '\n' ' ')" = "0/2 1/2 " ]
ok $? "srun -n 2 starts tasks 0/2 and 1/2"

# ---- the jobs of tests/dist/train-mpi.py: one process against srun -n 2 --mpi=pmix ----
/usr/bin/python3 - "$TMP" "$SCP_BIN" "$SCP_SRCDIR/tests" <<'EOF' || { ok 1 "test data"; done_testing; }
import os, sys
sys.path.insert(0, sys.argv[3])
import train_testdata as td
td.make_shards(sys.argv[2], sys.argv[1])
td.write_config(os.path.join(sys.argv[1], "cfg", "config.json"), vocab=64, mask_id=63)
EOF
base="--init random:$TMP/cfg/config.json --data $TMP/shards --steps 20 --batch-tokens 512 --lr 3e-3 --warmup 3
      --save-every 10 --threads 1 -q"
compare() {
    /usr/bin/python3 - "$1" "$2" "$SCP_SRCDIR/tests" <<'EOF'
import os, sys
sys.path.insert(0, sys.argv[3])
import mpi_testlib as mt
import train_testdata as td
a, b = sys.argv[1], sys.argv[2]
la, lb = mt.losses(a), mt.losses(b)
dl = mt.max_rel(la, lb)
dw = mt.tensors_rel(os.path.join(a, "latest", "model.safetensors"), os.path.join(b, "latest", "model.safetensors"))
do = mt.tensors_rel(os.path.join(a, "latest", "optimizer.safetensors"),
                    os.path.join(b, "latest", "optimizer.safetensors"))
print("%d losses %.1e, weights %.1e, moments %.1e relative" % (len(lb), dl, dw, do))
sys.exit(0 if len(la) == 20 and len(lb) == 20 and max(dl, dw, do) <= 1e-5 else 1)
EOF
}
i=0
for extra in "--micro-batch 2" "--micro-batch 2 --attention anneal:10" "--objective ar --doc-mask"; do
    one="$TMP/one$i" two="$TMP/two$i"
    # shellcheck disable=SC2086
    "$SCP_BIN/scp-train" $base $extra -o "$one" 2>"$TMP/one.err"; r1=$?
    # shellcheck disable=SC2086
    timeout 50 srun -n 2 -O -K --mpi=pmix "$SCP_BIN/scp-train" $base $extra -o "$two" 2>"$TMP/two.err"; r2=$?
    [ $r1 -eq 0 ] && [ $r2 -eq 0 ]
    ok $? "$extra: one process and srun -n 2 --mpi=pmix complete"
    if [ $r1 -ne 0 ] || [ $r2 -ne 0 ]; then
        tail -c 1500 "$TMP/one.err" "$TMP/two.err" | sed 's/^/# /'; logs
    else
        compare "$one" "$two" >"$TMP/cmp" 2>&1
        ok $? "$extra: srun matches one process: $(tail -1 "$TMP/cmp") (<= 1e-5)"
    fi
    i=$((i + 1))
done

# Two ranks really ran as one job: rank 0 alone wrote the metrics (one line per step) and the checkpoints.
/usr/bin/python3 - "$TMP/two0" "$SCP_SRCDIR/tests" <<'EOF'
import json, os, sys
sys.path.insert(0, sys.argv[2])
import train_testdata as td
d = sys.argv[1]
steps = [x["step"] for x in td.read_metrics(d) if "loss" in x]
assert steps == list(range(1, 21)), steps
assert sorted(n for n in os.listdir(d) if n.startswith("step-")) == ["step-0000010", "step-0000020"], os.listdir(d)
with open(os.path.join(d, "latest", "trainer_state.json")) as f:
    assert json.load(f).get("world_size") == 2
EOF
ok $? "srun run: metrics steps 1..20 once, checkpoints at 10 and 20, trainer_state.json world_size 2"

# Without PMI (srun's --mpi=none) the ranks cannot form one MPI job: they must stop, not train as two copies.
# shellcheck disable=SC2086
timeout 50 srun -n 2 -O --mpi=none "$SCP_BIN/scp-train" $base -o "$TMP/nopmi" >/dev/null 2>"$TMP/nopmi.err"; r=$?
[ $r -ne 0 ] && [ $r -ne 124 ] && [ ! -e "$TMP/nopmi/metrics.jsonl" ]
ok $? "srun --mpi=none: the job fails (exit $r) and writes no run"

done_testing
