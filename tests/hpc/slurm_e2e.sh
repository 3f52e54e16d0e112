#!/usr/bin/env bash
# End-to-end proof on a real Slurm: a single-node cluster on 127.0.0.1 runs a small demo cohort
# through `snakemake --executor slurm` with the project's workflow profile (profiles/slurm),
# and the results must equal a local run's byte for byte.
#
#   sudo tests/hpc/slurm_e2e.sh   # Debian/Ubuntu, as root; about 1.5 minutes plus installing
#
# What it does:
#   1. installs slurmctld, slurmd, slurm-client and munge with apt-get when they are missing,
#      and the Slurm executor plugin (the `hpc` extra) into the venv when it is missing;
#   2. writes /etc/slurm/slurm.conf (the plugin's job step clears every SLURM_* variable,
#      SLURM_CONF included, before it calls srun, so the config must be at the default path),
#      starts munged (unless one already answers), slurmctld and slurmd, every address
#      127.0.0.1, no cgroups (proctrack/linuxproc, task/none), no accounting database:
#      finished jobs stay visible to squeue for MinJobAge=600 s and are written to a
#      jobcomp/filetxt log, and the plugin is told to ask squeue for job states;
#   3. runs three samples (two demo patients and an unreadable file) locally, then through
#      Slurm, partition given the way a user gives it (their own --profile);
#   4. checks: one Slurm job per sample (rule one_tube_specimen: the tube and its specimen),
#      each job id in Snakemake's log, in squeue's history and in the jobcomp log as COMPLETED,
#      each sample's rule in that job's Slurm log, no localrule in any Slurm job; every TSV
#      equal to the local run's; a second run has nothing to do;
#   5. on exit, whatever happened: cancels the test cluster's jobs, stops every daemon it
#      started by its PID, removes the slurm.conf it wrote.
#
# It refuses (exit 77, "skipped") to touch a machine whose Slurm it did not set up: an
# /etc/slurm/slurm.conf without this script's marker, or a slurmctld already running.
# Environment: PYTHON (default: the repository's .venv/bin/python, else python3),
# KEEP_WORKDIR=1 keeps the scratch folder, E2E_TIMEOUT (seconds, default 600) bounds the
# Slurm run.

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MARKER="# written by antigen-profile tests/hpc/slurm_e2e.sh"
CONF=/etc/slurm/slurm.conf
E2E_TIMEOUT="${E2E_TIMEOUT:-600}"
SKIP=77
T0=$(date +%s)

log() { printf '[slurm-e2e %4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
fail() { log "FAIL: $*"; exit 1; }
skip() { log "SKIP: $*"; exit "$SKIP"; }
field() { grep -oE "(^| )$2=[^ ]*" <<<"$1" | head -n 1 | sed 's/^ //'; } # field "$record" Key

[ "$(id -u)" -eq 0 ] || skip "needs root (it installs packages and starts Slurm daemons)"
command -v apt-get >/dev/null || skip "needs apt-get (Debian or Ubuntu)"

# One run at a time on a machine: the cluster's config and ports are machine-wide.
mkdir -p /run/lock
exec 9>/run/lock/antigen-profile-slurm-e2e.lock
flock -w 900 9 || fail "another slurm_e2e.sh run holds /run/lock/antigen-profile-slurm-e2e.lock"

if [ -e "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    skip "$CONF exists and was not written by this script: not touching a real Slurm"
fi
running() { # running NAME: a process of that name exists (no procps needed)
    local comm
    for comm in /proc/[0-9]*/comm; do [ "$(cat "$comm" 2>/dev/null)" = "$1" ] && return 0; done
    return 1
}
if running slurmctld || running slurmd; then
    skip "a slurmctld or slurmd is already running: not touching a real Slurm"
fi

# ---------------------------------------------------------------------------- 1. install
INSTALLED=0
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurmctld slurmd slurm-client munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # Keep apt from starting the packages' own daemons: this script starts (and stops) its own.
    POLICY=/usr/sbin/policy-rc.d
    if [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY" && chmod 755 "$POLICY"
        trap 'rm -f "$POLICY"' EXIT
    else
        POLICY=""
    fi
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge \
        >/dev/null
    INSTALLED=1
    if [ -n "$POLICY" ]; then rm -f "$POLICY"; trap - EXIT; fi
fi
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c "import snakemake_executor_plugin_slurm" 2>/dev/null; then
    log "installing the Slurm executor plugin (pip install -e '.[hpc]')"
    "$PYTHON" -m pip install -q -e "${REPO}[hpc]"
fi
BIN="$(dirname "$PYTHON")"
export PATH="$BIN:$PATH"

# ------------------------------------------------------------------------ 2. bring-up
WORK="$(mktemp -d /tmp/antigen-profile-slurm-e2e.XXXXXX)"
chmod 755 "$WORK"
STARTED_PIDS=()
WROTE_CONF=0

cleanup() {
    local rc=$?
    set +e
    if [ "$WROTE_CONF" -eq 1 ] && [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
        scancel --partition=ci >/dev/null 2>&1
        sleep 2
    fi
    # Newest first: slurmd, slurmctld, then munged.
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        kill "${STARTED_PIDS[i]}" 2>/dev/null
    done
    for pid in "${STARTED_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null
    done
    if [ "$WROTE_CONF" -eq 1 ]; then rm -f "$CONF"; fi
    # Slurm's client tools without a config look for a controller in DNS every time the
    # executor plugin starts; on a machine that is reused, take away what this script added.
    if [ "$INSTALLED" -eq 1 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get remove -y -q slurmctld slurmd slurm-client \
            munge >/dev/null 2>&1
        log "removed the Slurm packages this script installed"
    fi
    if [ "$rc" -ne 0 ] && [ "$rc" -ne "$SKIP" ] && [ -d "$WORK" ]; then
        for f in "$WORK"/log/*.log "$WORK"/slurm.out; do
            [ -f "$f" ] && { echo "----- tail $f"; tail -n 40 "$f"; }
        done
        KEEP_WORKDIR=1
    fi
    if [ "${KEEP_WORKDIR:-0}" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    log "stopped ${#STARTED_PIDS[@]} daemon(s); exit $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK"/{state,spool,log,munge} /etc/slurm /run/munge
chown munge:munge "$WORK/munge" /run/munge
chmod 755 /run/munge # munged's socket folder must be world-executable

if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already answers on /run/munge: using it"
else
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    setpriv --reuid=munge --regid=munge --init-groups \
        munged --foreground --origin=127.0.0.1 --log-file="$WORK/munge/munged.log" \
        --seed-file="$WORK/munge/munged.seed" --pid-file="$WORK/munge/munged.pid" \
        >"$WORK/munge/munged.out" 2>&1 &
    STARTED_PIDS+=($!)
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
    munge -n | unmunge >/dev/null || fail "munged did not start"
    log "munged up (pid ${STARTED_PIDS[-1]})"
fi

NODE="$(hostname -s)"
# The node's real CPUs and memory, as slurmd sees them (a larger figure would drain the node).
HW="$(slurmd -C | head -n 1 | sed -E 's/^NodeName=[^ ]+ //')"
cat >"$CONF" <<EOF
$MARKER
# Single-node test cluster on 127.0.0.1; removed when the script exits.
ClusterName=apci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
# No slurmdbd: squeue answers for finished jobs for MinJobAge seconds, well above the
# plugin's first status check, and every finished job is written to the jobcomp log.
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$WORK/log/jobcomp.txt
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE $HW State=UNKNOWN
PartitionName=ci Nodes=$NODE Default=NO MaxTime=60 State=UP
EOF
WROTE_CONF=1

slurmctld -D -i >"$WORK/log/slurmctld.out" 2>&1 &
STARTED_PIDS+=($!)
for _ in $(seq 50); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
scontrol ping | grep -q UP || fail "slurmctld did not start"
slurmd -D -N "$NODE" >"$WORK/log/slurmd.out" 2>&1 &
STARTED_PIDS+=($!)
for _ in $(seq 100); do
    [ "$(sinfo -h -n "$NODE" -o %T 2>/dev/null)" = idle ] && break
    sleep 0.2
done
[ "$(sinfo -h -n "$NODE" -o %T)" = idle ] || fail "node $NODE is not idle: $(sinfo -N -l)"
log "Slurm up: slurmctld pid ${STARTED_PIDS[-2]}, slurmd pid ${STARTED_PIDS[-1]}, $(sinfo -V), partition $(sinfo -h -o '%P: %D node, %c cpus, %m MB')"
# (No Slurm command and no Snakemake run before this point: with Slurm's client installed but
# no slurm.conf, both look for a controller in DNS; from here on the config says 127.0.0.1.)
log "snakemake $("$PYTHON" -m snakemake --version), executor plugin $("$PYTHON" -c 'from importlib.metadata import version; print(version("snakemake-executor-plugin-slurm"))')"

# --------------------------------------------------------------------------- 3. runs
COHORT="$WORK/cohort"
"$BIN/antigen-profile" demo "$WORK/demo" >/dev/null
mkdir -p "$COHORT/tubes"
printf 'sample_id\tpatient_id\tfcs\tcontrol_fcs\ttimepoint\n' >"$COHORT/samples.tsv"
for sid in P01-R1 P06-R1; do
    cp "$WORK/demo/fcs/$sid.fcs" "$WORK/demo/fcs/${sid}_control.fcs" "$COHORT/tubes/"
    printf '%s\t%s\ttubes/%s.fcs\ttubes/%s_control.fcs\trelapse\n' \
        "$sid" "${sid%%-*}" "$sid" "$sid" >>"$COHORT/samples.tsv"
done
printf 'not an FCS file' >"$COHORT/tubes/X99-R1.fcs"
printf 'X99-R1\tP01\ttubes/X99-R1.fcs\t\t\n' >>"$COHORT/samples.tsv"
cp "$WORK/demo/patients.tsv" "$COHORT/patients.tsv"
SAMPLES=(P01-R1 P06-R1 X99-R1)

cd "$REPO" # the workflow runs from the repository, as the README says
cohort_config=(--config "samples=$COHORT/samples.tsv" "patients=$COHORT/patients.tsv")

log "local run (--cores 2) -> $WORK/local"
timeout -k 30 "$E2E_TIMEOUT" "$PYTHON" -m snakemake --cores 2 \
    "${cohort_config[@]}" "results=$WORK/local" >"$WORK/local.out" 2>&1 \
    || { tail -n 40 "$WORK/local.out"; fail "local run failed"; }

# The partition comes from the user's own profile, as on a real cluster (account: this test
# cluster has no accounting, so there is none to give).
mkdir -p "$WORK/user-profile"
cat >"$WORK/user-profile/config.v9+.yaml" <<EOF
default-resources:
  slurm_partition: ci
EOF
slurm_args=(
    --profile "$WORK/user-profile"
    --workflow-profile profiles/slurm
    --slurm-status-command squeue
    --slurm-init-seconds-before-status-checks 5
    --slurm-logdir "$WORK/slurm-logs"
    --slurm-keep-successful-logs
)
log "Slurm run (--executor slurm from profiles/slurm) -> $WORK/slurm"
START=$(date +%s)
timeout -k 30 "$E2E_TIMEOUT" "$PYTHON" -m snakemake "${slurm_args[@]}" \
    "${cohort_config[@]}" "results=$WORK/slurm" >"$WORK/slurm.out" 2>&1 \
    || { tail -n 60 "$WORK/slurm.out"; fail "Slurm run failed or timed out"; }
log "Slurm run finished in $(($(date +%s) - START)) s"

# ------------------------------------------------------------------------- 4. checks
grep -q "workflow specific profile profiles/slurm" "$WORK/slurm.out" \
    || fail "the run did not use profiles/slurm"
mapfile -t JOBIDS < <(sed -nE 's/.*has been submitted with SLURM jobid ([0-9]+).*/\1/p' "$WORK/slurm.out")
[ "${#JOBIDS[@]}" -eq "${#SAMPLES[@]}" ] \
    || fail "expected ${#SAMPLES[@]} Slurm jobs (one group job per sample), Snakemake's log names ${#JOBIDS[@]}: ${JOBIDS[*]}"
HISTORY="$(squeue -h --states=all -o '%i %T %P %j')"
for id in "${JOBIDS[@]}"; do
    grep -qE "^$id COMPLETED ci " <<<"$HISTORY" \
        || fail "Slurm job $id is not COMPLETED in partition ci per squeue: $HISTORY"
    record="$(grep -E "^JobId=$id " "$WORK/log/jobcomp.txt" || true)"
    [ "$(field "$record" JobState)" = JobState=COMPLETED ] \
        || fail "Slurm job $id is not COMPLETED in the jobcomp log: $record"
    log "Slurm job $id: $(for k in JobState Partition TimeLimit Tres ExitCode; do field "$record" $k; done | tr '\n' ' ')"
done
for sid in "${SAMPLES[@]}"; do
    found=""
    for id in "${JOBIDS[@]}"; do
        slog="$(find "$WORK/slurm-logs" -name "$id.log" | head -n 1)"
        [ -n "$slog" ] || fail "no Slurm log for job $id"
        if grep -q "wildcards: sample=$sid\$" "$slog"; then
            grep -q "rule one_tube_specimen:" "$slog" \
                || fail "rule one_tube_specimen of $sid is not in Slurm job $id"
            [ -z "$found" ] || fail "$sid ran in Slurm jobs $found and $id"
            found=$id
        fi
    done
    [ -n "$found" ] || fail "$sid ran in no Slurm job"
    log "$sid: analysis, decision, reports (rule one_tube_specimen) in Slurm job $found"
done
for rule in recommendations cohort_report demo_tube; do
    if grep -rqE "rule $rule:" "$WORK/slurm-logs"; then fail "localrule $rule ran in a Slurm job"; fi
done

# Every TSV (cohort tables and each sample's tables), byte for byte.
mapfile -t TSVS < <(cd "$WORK/local" && find . -name '*.tsv' -not -path './benchmarks/*' | sort)
[ "${#TSVS[@]}" -ge 8 ] || fail "only ${#TSVS[@]} TSVs in the local run"
for tsv in "${TSVS[@]}"; do
    cmp -s "$WORK/local/$tsv" "$WORK/slurm/$tsv" || fail "$tsv differs between local and Slurm runs"
done
[ "$(cd "$WORK/slurm" && find . -name '*.tsv' -not -path './benchmarks/*' | sort)" = \
    "$(printf '%s\n' "${TSVS[@]}")" ] || fail "the two runs wrote different sets of TSVs"
grep -q "qc_failed" "$WORK/slurm/recommendations.tsv" || fail "X99-R1 is not qc_failed"
log "${#TSVS[@]} TSVs identical (recommendations.tsv, every antigens.tsv, ...)"

"$PYTHON" -m snakemake "${slurm_args[@]}" "${cohort_config[@]}" "results=$WORK/slurm" \
    --dry-run >"$WORK/rerun.out" 2>&1 || fail "rerun dry-run failed"
grep -q "Nothing to be done" "$WORK/rerun.out" || fail "a rerun would recompute finished work"

log "PASS: ${#JOBIDS[@]} Slurm jobs (${JOBIDS[*]}), results equal the local run's"
