#!/usr/bin/env bash
# A real SLURM cluster on this machine, for the `slurm` and `multinode` tests and for trying Holo.
#
#   scripts/slurm-local.sh start  [--nodes N] [DIR]   start munged, slurmctld and N slurmd (default 1)
#   scripts/slurm-local.sh status [DIR]   say which daemons run and show the nodes and partition
#   scripts/slurm-local.sh stop   [DIR]   stop the daemons this script started (by their PIDs)
#
# DIR (default $HOLO_SLURM_DIR, else /tmp/holo-slurm) holds everything: the generated
# slurm.conf, the munge key and socket, state, spool, logs and PID files. After `start`,
#   source DIR/env.sh        # exports SLURM_CONF (and the ports in use)
# makes sbatch, squeue, scontrol, scancel and `holo submit` talk to this cluster.
#
# Nothing is installed or changed outside DIR: munged gets its own key, socket and seed files
# there, slurm.conf points every daemon and client at them, and ports are picked among free
# ones (from 6817 up), so several clusters (in different DIRs) can run side by side. The
# daemons run without systemd: munged as the user munge, slurmctld and slurmd as root.
# Requires: slurm-wlm (slurmctld, slurmd, client commands) and munge (scripts/install-deps.sh).
#
# With --nodes N (N >= 2) the cluster has N compute nodes, each a node of its own on this one
# machine: a network namespace joined to a private bridge by a veth pair (the bridge holds the
# controller's address 10.R.S.1/24, node i has 10.R.S.(10+i); the /24 is chosen among unused
# ones), its own UTS hostname (holo-node<i>), its own mount namespace (with DIR/etc/hosts naming
# every node as /etc/hosts), and its own slurmd, spool, TmpFS and log under DIR. The nodes share
# the filesystem (the cluster's shared storage) and the one munged. One process per node holds
# its namespaces (DIR/run/node<i>.pid); `DIR/bin/node-exec HOST CMD...` runs CMD on a node (HOST
# a node's name or address) and serves as mpirun's remote shell (`holo launch --hosts ...
# --launch-agent DIR/bin/node-exec`) where there is no ssh. DIR/env.sh then also keeps MPI's
# TCP traffic on the bridge's subnet (OMPI_MCA_{oob,btl}_tcp_if_include). Needs ip (iproute2)
# and unshare/nsenter (util-linux), and the right to make namespaces: the script says so and
# stops when it cannot. `stop` removes the namespaces, veths and bridge again.
set -euo pipefail

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

[ $# -ge 1 ] || usage
cmd=$1
shift
nodes=1
dir_arg=
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) [ $# -ge 2 ] || usage; nodes=$2; shift 2 ;;
    --nodes=*) nodes=${1#--nodes=}; shift ;;
    -*) usage ;;
    *) [ -z "$dir_arg" ] || usage; dir_arg=$1; shift ;;
  esac
done
case "$nodes" in ''|*[!0-9]*) printf 'slurm-local: error: --nodes needs a whole number, got %s\n' "$nodes" >&2; exit 2 ;; esac
if [ "$nodes" -lt 1 ] || [ "$nodes" -gt 8 ]; then
  printf 'slurm-local: error: --nodes must be between 1 and 8, got %s\n' "$nodes" >&2
  exit 2
fi
dir=${dir_arg:-${HOLO_SLURM_DIR:-/tmp/holo-slurm}}
case "$dir" in /*) ;; *) dir="$(pwd)/$dir" ;; esac

conf="$dir/etc/slurm.conf"
munge_dir="$dir/munge"
socket="$munge_dir/munge.socket.2"
ctld_pid="$dir/run/slurmctld.pid"
slurmd_pid="$dir/run/slurmd.pid"
munged_pid="$munge_dir/munged.pid"

say() { printf 'slurm-local: %s\n' "$*"; }
die() { printf 'slurm-local: error: %s\n' "$*" >&2; exit 1; }

# The PID in FILE if that process is alive and is the program NAME; nothing otherwise.
live_pid() {
  local file=$1 name=$2 pid
  [ -f "$file" ] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [ -n "$pid" ] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # The PID may have been reused since the daemon died: check what runs under it.
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  echo "$pid"
}

port_in_use() {
  local hex
  hex=$(printf '%04X' "$1")
  # Listening TCP sockets (state 0A) on any address, IPv4 and IPv6.
  awk -v p=":$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { found = 1 }
                    END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Two consecutive free ports from 6817 up (slurmctld, slurmd), avoiding other local clusters.
pick_ports() {
  local p=6817
  while [ $p -lt 7817 ]; do
    if ! port_in_use $p && ! port_in_use $((p + 1)); then
      echo "$p $((p + 1))"
      return 0
    fi
    p=$((p + 2))
  done
  die "no two free consecutive TCP ports between 6817 and 7817"
}

# Waits (bounded by a number of tries, each short) until COMMAND succeeds.
wait_for() {
  local what=$1 tries=$2
  shift 2
  local i=0
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt "$tries" ] || return 1
    sleep 0.2
  done
}

write_conf() {
  local host=$1 ctld_port=$2 slurmd_port=$3
  # The node's hardware exactly as slurmd sees it, so the node is not drained for a mismatch.
  local node_hw cpus mem mpi
  node_hw=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //')
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node_hw")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_hw")
  [ -n "$cpus" ] && [ -n "$mem" ] || die "cannot read CPUs and RealMemory from 'slurmd -C'"
  # PMIx when the plugin is installed (Holo's workers start with srun --mpi=pmix), else none.
  mpi=none
  if ls /usr/lib/*/slurm-wlm/mpi_pmix.so /usr/lib/slurm/mpi_pmix.so /usr/lib64/slurm/mpi_pmix.so \
       >/dev/null 2>&1; then
    mpi=pmix
  fi
  cat >"$conf" <<EOF
# Generated by scripts/slurm-local.sh for a single-node cluster on $host.
ClusterName=holo-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also sets how long a requeued job waits before it may start again (default
# 120 s): the revoked credential of its last start must have expired first.
AuthInfo=socket=$socket,cred_expire=15
CredType=cred/munge
StateSaveLocation=$dir/state/ctld
SlurmdSpoolDir=$dir/state/slurmd
SlurmctldPidFile=$ctld_pid
SlurmdPidFile=$slurmd_pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups here: processes are tracked through /proc, tasks are not bound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
MpiDefault=$mpi
SchedulerType=sched/backfill
# React quickly: a one-node test cluster has nothing to batch up.
SchedulerParameters=sched_interval=2,batch_sched_delay=1
ReturnToService=2
JobRequeue=1
# Finished jobs stay visible to scontrol for an hour (there is no accounting database).
MinJobAge=3600
KillWait=30
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.log
NodeName=$host NodeAddr=127.0.0.1 $node_hw State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  [ "$(id -u)" -eq 0 ] || die "run as root (slurmd must start job processes as any user)"
  for prog in munged slurmctld slurmd sinfo scontrol; do
    command -v "$prog" >/dev/null || die "'$prog' not found: run scripts/install-deps.sh"
  done
  id munge >/dev/null 2>&1 || die "no user 'munge': install the munge package"
  if live_pid "$ctld_pid" slurmctld >/dev/null || live_pid "$slurmd_pid" slurmd >/dev/null ||
     live_pid "$munged_pid" munged >/dev/null; then
    die "a cluster already runs from $dir (stop it first: $0 stop $dir)"
  fi

  mkdir -p "$dir/etc" "$dir/state/ctld" "$dir/state/slurmd" "$dir/log" "$dir/run" "$munge_dir"
  # munged insists on a munge-owned socket folder that others may only traverse (0711), a
  # private key, and world-traversable folders above it.
  chown munge:munge "$munge_dir"
  chmod 0711 "$munge_dir"
  if [ ! -s "$munge_dir/munge.key" ]; then
    dd if=/dev/urandom of="$munge_dir/munge.key" bs=1024 count=1 status=none
  fi
  chown munge:munge "$munge_dir/munge.key"
  chmod 0400 "$munge_dir/munge.key"
  if ! runuser -u munge -- test -x "$munge_dir"; then
    die "the munge user cannot reach $munge_dir: choose a DIR whose parents are world-traversable"
  fi

  local host ports ctld_port slurmd_port
  host=$(hostname -s)
  read -r ctld_port slurmd_port < <(pick_ports)
  write_conf "$host" "$ctld_port" "$slurmd_port"
  cat >"$dir/env.sh" <<EOF
export SLURM_CONF=$conf
EOF

  rm -f "$socket" "$munged_pid" "$ctld_pid" "$slurmd_pid"
  runuser -u munge -- munged --socket="$socket" --key-file="$munge_dir/munge.key" \
    --pid-file="$munged_pid" --log-file="$munge_dir/munged.log" \
    --seed-file="$munge_dir/munged.seed" ||
    die "munged did not start; see $munge_dir/munged.log"
  wait_for munged 50 test -S "$socket" || die "munged socket $socket did not appear"
  if command -v munge >/dev/null && ! munge --socket="$socket" -n | unmunge --socket="$socket" >/dev/null; then
    die "munge credentials do not round-trip through $socket"
  fi

  export SLURM_CONF=$conf
  # -i: ignore state left by an earlier cluster in this DIR that cannot be recovered.
  slurmctld -i -f "$conf" || die "slurmctld did not start; see $dir/log/slurmctld.log"
  wait_for slurmctld 150 scontrol ping ||
    die "slurmctld does not answer on port $ctld_port; see $dir/log/slurmctld.log"
  slurmd -f "$conf" || die "slurmd did not start; see $dir/log/slurmd.log"
  # The node is usable once it is idle (or mixed/allocated, should a job already be waiting).
  node_ready() { sinfo -h -n "$host" -o '%T' | grep -Eq '^(idle|mixed|allocated)'; }
  wait_for slurmd 300 node_ready ||
    die "node $host did not become idle ($(sinfo -h -n "$host" -o '%T %E')); see $dir/log/slurmd.log"

  say "cluster up in $dir (slurmctld port $ctld_port, slurmd port $slurmd_port, node $host)"
  say "use it with: source $dir/env.sh"
}

stop_one() {
  local file=$1 name=$2 pid i
  if ! pid=$(live_pid "$file" "$name"); then
    rm -f "$file"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name ($pid) ignored SIGTERM for 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
  say "stopped $name ($pid)"
}

stop() {
  # Jobs first: their processes (under slurmstepd) would outlive slurmd. KillWait bounds how
  # long they take to end once cancelled.
  if live_pid "$ctld_pid" slurmctld >/dev/null; then
    local jobs i
    jobs=$(SLURM_CONF=$conf squeue -h -o '%i' 2>/dev/null || true)
    if [ -n "$jobs" ]; then
      say "cancelling jobs: $(echo $jobs)"
      # shellcheck disable=SC2086
      SLURM_CONF=$conf scancel $jobs 2>/dev/null || true
      for i in $(seq 1 300); do
        [ -z "$(SLURM_CONF=$conf squeue -h -o '%i' 2>/dev/null)" ] && break
        sleep 0.2
      done
    fi
  fi
  # Compute node next, then the controller, then munged.
  stop_one "$slurmd_pid" slurmd
  stop_one "$ctld_pid" slurmctld
  stop_one "$munged_pid" munged
}

status() {
  local rc=0 pid
  for pair in "$munged_pid munged" "$ctld_pid slurmctld" "$slurmd_pid slurmd"; do
    set -- $pair
    if pid=$(live_pid "$1" "$2"); then
      say "$2 running (pid $pid)"
    else
      say "$2 not running"
      rc=1
    fi
  done
  if [ $rc -eq 0 ]; then
    SLURM_CONF=$conf sinfo -o '%P %a %D %T %c %m %N'
  fi
  return $rc
}

# ---- several nodes, each in namespaces of its own ------------------------------------------

mn_state="$dir/run/multinode.env"
node_name() { echo "holo-node$1"; }

# Names of the bridge, namespaces and veths: from a hash of DIR, so clusters in different DIRs
# do not collide, and short (interface names have at most 15 characters).
mn_names() {
  net_id=$(printf '%s' "$dir" | md5sum | cut -c1-6)
  bridge="hb$net_id"
}
node_netns() { echo "holo$net_id-n$1"; }
node_veth() { echo "hv$net_id-$1"; }

# A 10.213.S.0/24 that no interface or route of this machine uses yet.
pick_subnet() {
  local start=$((0x${net_id:0:4} % 200)) i s
  for i in $(seq 0 199); do
    s=$(((start + i) % 200 + 20))
    if ! ip -4 addr show | grep -q "inet 10\.213\.$s\." &&
       ! ip -4 route show | grep -q "^10\.213\.$s\."; then
      echo "10.213.$s"
      return 0
    fi
  done
  die "no free 10.213.S.0/24 subnet for the cluster's bridge"
}

# Refuses, with the reason, where namespaces cannot be made; leaves nothing behind.
check_namespaces() {
  local prog probe err
  for prog in ip unshare nsenter md5sum setsid; do
    command -v "$prog" >/dev/null ||
      die "'$prog' not found: a multi-node cluster needs iproute2 (ip) and util-linux (unshare, nsenter, setsid)"
  done
  probe="holo-probe-$$"
  if ! err=$(ip netns add "$probe" 2>&1); then
    die "cannot make network namespaces here (ip netns add: $err): a multi-node cluster needs CAP_NET_ADMIN and CAP_SYS_ADMIN (root on a host or in a privileged container)"
  fi
  if ! err=$(ip netns exec "$probe" unshare --uts --mount -- hostname holo-probe 2>&1); then
    ip netns del "$probe" 2>/dev/null || true
    die "cannot make UTS and mount namespaces here (unshare: $err): a multi-node cluster needs CAP_SYS_ADMIN"
  fi
  ip netns del "$probe"
  if ! err=$(ip link add "hbprobe$$" type bridge 2>&1); then
    die "cannot make a network bridge here (ip link add type bridge: $err)"
  fi
  ip link del "hbprobe$$"
}

# Removes what mn_network made (each part only if it is there).
mn_teardown_network() {
  local i
  for i in $(seq 1 "$mn_nodes"); do
    ip link del "$(node_veth "$i")" 2>/dev/null || true
    ip netns del "$(node_netns "$i")" 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
}

mn_network() {
  local i ns veth
  ip link add "$bridge" type bridge
  ip addr add "$subnet.1/24" dev "$bridge"
  ip link set "$bridge" up
  for i in $(seq 1 "$mn_nodes"); do
    ns=$(node_netns "$i")
    veth=$(node_veth "$i")
    ip netns add "$ns"
    ip link add "$veth" type veth peer name "${veth}p"
    ip link set "${veth}p" netns "$ns"
    ip -n "$ns" link set "${veth}p" name eth0
    ip -n "$ns" addr add "$subnet.$((10 + i))/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip link set "$veth" master "$bridge"
    ip link set "$veth" up
  done
}

# The process that holds node I's namespaces: its network namespace, and a UTS and a mount
# namespace of its own (hostname, /etc/hosts and the node-local TmpFS).
mn_node_holder() {
  local i=$1 name
  name=$(node_name "$i")
  mkdir -p "$dir/nodes/$name/tmp"
  rm -f "$dir/run/node$i.pid"
  # nsenter, not `ip netns exec`: that remounts /sys, and slurmd needs /sys/fs/cgroup.
  setsid nsenter --net="/run/netns/$(node_netns "$i")" unshare --uts --mount --propagation private -- \
    bash -c 'hostname "$1" && mount --bind "$2" /etc/hosts && mount --bind "$3" "$4" &&
             echo $$ >"$5" && exec sleep infinity' \
    _ "$name" "$dir/etc/hosts" "$dir/nodes/$name/tmp" "$dir/tmp" "$dir/run/node$i.pid" \
    </dev/null >>"$dir/log/node$i.log" 2>&1 &
  wait_for "node $i" 100 test -s "$dir/run/node$i.pid" ||
    die "the namespaces of node $name did not come up; see $dir/log/node$i.log"
}

mn_write_conf() {
  local host=$1 ctld_port=$2 slurmd_port=$3
  local node_hw cpus mem mpi i
  node_hw=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //')
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node_hw")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_hw")
  [ -n "$cpus" ] && [ -n "$mem" ] || die "cannot read CPUs and RealMemory from 'slurmd -C'"
  mpi=none
  if ls /usr/lib/*/slurm-wlm/mpi_pmix.so /usr/lib/slurm/mpi_pmix.so /usr/lib64/slurm/mpi_pmix.so \
       >/dev/null 2>&1; then
    mpi=pmix
  fi
  # Every node declares the whole machine's CPUs and memory: the nodes share them.
  cat >"$conf" <<CONF
# Generated by scripts/slurm-local.sh for a $mn_nodes-node cluster: slurmctld on $host
# ($subnet.1, the bridge $bridge), each slurmd in namespaces of its own.
ClusterName=holo-local
SlurmctldHost=$host($subnet.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket,cred_expire=15
CredType=cred/munge
StateSaveLocation=$dir/state/ctld
# %n: the node's name, so every node keeps its own spool, PID and log files.
SlurmdSpoolDir=$dir/state/slurmd-%n
SlurmctldPidFile=$ctld_pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# Node-local temporary storage: one path, a different folder on each node (the node's mount
# namespace binds DIR/nodes/<node>/tmp there). PMIx keeps its per-step files in it.
TmpFS=$dir/tmp
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
MpiDefault=$mpi
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,batch_sched_delay=1
ReturnToService=2
JobRequeue=1
MinJobAge=3600
KillWait=30
# A node whose slurmd stops answering is marked DOWN after this long (default 300 s).
SlurmdTimeout=30
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.log
CONF
  for i in $(seq 1 "$mn_nodes"); do
    echo "NodeName=$(node_name "$i") NodeAddr=$subnet.$((10 + i)) NodeHostname=$(node_name "$i") $node_hw State=UNKNOWN" >>"$conf"
  done
  echo "PartitionName=debug Nodes=holo-node[1-$mn_nodes] Default=YES MaxTime=INFINITE State=UP" >>"$conf"
}

# The remote shell for mpirun (--mca plm_rsh_agent), as `ssh HOST COMMAND...` would be.
mn_write_node_exec() {
  cat >"$dir/bin/node-exec" <<AGENT
#!/usr/bin/env bash
# Generated by scripts/slurm-local.sh: runs a command on a node of the local cluster in
# $dir as 'ssh HOST COMMAND...' runs it on a remote host (the words joined, run by sh).
# HOST is a node's name or address. mpirun's remote shell where there is no ssh:
#   mpirun --mca plm_rsh_agent $dir/bin/node-exec --host holo-node1,holo-node2 ...
set -eu
while [ \$# -gt 0 ] && [ "\${1#-}" != "\$1" ]; do shift; done   # ssh-style options: ignored
[ \$# -ge 2 ] || { echo "usage: node-exec HOST COMMAND..." >&2; exit 255; }
host=\$1
shift
while read -r name addr pidfile; do
  if [ "\$host" = "\$name" ] || [ "\$host" = "\$addr" ]; then
    exec nsenter -t "\$(cat "\$pidfile")" -n -u -m -- /bin/sh -c "\$*"
  fi
done <"$dir/run/nodes"
echo "node-exec: no node '\$host' in $dir/run/nodes" >&2
exit 255
AGENT
  chmod 0755 "$dir/bin/node-exec"
}

start_multi() {
  [ "$(id -u)" -eq 0 ] || die "run as root (slurmd must start job processes as any user; namespaces need root)"
  for prog in munged slurmctld slurmd sinfo scontrol; do
    command -v "$prog" >/dev/null || die "'$prog' not found: run scripts/install-deps.sh"
  done
  id munge >/dev/null 2>&1 || die "no user 'munge': install the munge package"
  if live_pid "$ctld_pid" slurmctld >/dev/null || live_pid "$slurmd_pid" slurmd >/dev/null ||
     live_pid "$munged_pid" munged >/dev/null || [ -f "$mn_state" ]; then
    die "a cluster already runs from $dir (stop it first: $0 stop $dir)"
  fi
  check_namespaces
  mn_nodes=$nodes
  mn_names
  subnet=$(pick_subnet)

  mkdir -p "$dir/etc" "$dir/state/ctld" "$dir/log" "$dir/run" "$dir/bin" "$dir/tmp" "$munge_dir"
  chown munge:munge "$munge_dir"
  chmod 0711 "$munge_dir"
  if [ ! -s "$munge_dir/munge.key" ]; then
    dd if=/dev/urandom of="$munge_dir/munge.key" bs=1024 count=1 status=none
  fi
  chown munge:munge "$munge_dir/munge.key"
  chmod 0400 "$munge_dir/munge.key"
  if ! runuser -u munge -- test -x "$munge_dir"; then
    die "the munge user cannot reach $munge_dir: choose a DIR whose parents are world-traversable"
  fi

  local host ctld_port slurmd_port i name addr
  host=$(hostname -s)
  read -r ctld_port slurmd_port < <(pick_ports)
  # What stop needs to undo, written before anything is made.
  cat >"$mn_state" <<STATE
mn_nodes=$mn_nodes
net_id=$net_id
bridge=$bridge
subnet=$subnet
STATE
  trap 'mn_abort' EXIT
  mn_write_conf "$host" "$ctld_port" "$slurmd_port"
  {
    echo "127.0.0.1 localhost"
    echo "$subnet.1 $host"
    for i in $(seq 1 "$mn_nodes"); do echo "$subnet.$((10 + i)) $(node_name "$i")"; done
  } >"$dir/etc/hosts"
  : >"$dir/run/nodes"
  for i in $(seq 1 "$mn_nodes"); do
    echo "$(node_name "$i") $subnet.$((10 + i)) $dir/run/node$i.pid" >>"$dir/run/nodes"
  done
  mn_write_node_exec
  cat >"$dir/env.sh" <<ENV
export SLURM_CONF=$conf
# MPI's control and data traffic between the nodes stays on the cluster's bridge.
export OMPI_MCA_oob_tcp_if_include=$subnet.0/24
export OMPI_MCA_btl_tcp_if_include=$subnet.0/24
# mpirun's remote shell for 'holo launch --hosts' on this cluster (there is no ssh here).
export LOCAL_CLUSTER_NODE_EXEC=$dir/bin/node-exec
ENV

  mn_network
  for i in $(seq 1 "$mn_nodes"); do mn_node_holder "$i"; done

  rm -f "$socket" "$munged_pid" "$ctld_pid"
  runuser -u munge -- munged --socket="$socket" --key-file="$munge_dir/munge.key" \
    --pid-file="$munged_pid" --log-file="$munge_dir/munged.log" \
    --seed-file="$munge_dir/munged.seed" ||
    die "munged did not start; see $munge_dir/munged.log"
  wait_for munged 50 test -S "$socket" || die "munged socket $socket did not appear"

  export SLURM_CONF=$conf
  slurmctld -i -f "$conf" || die "slurmctld did not start; see $dir/log/slurmctld.log"
  wait_for slurmctld 150 scontrol ping ||
    die "slurmctld does not answer on $subnet.1:$ctld_port; see $dir/log/slurmctld.log"
  for i in $(seq 1 "$mn_nodes"); do
    name=$(node_name "$i")
    mkdir -p "$dir/state/slurmd-$name"
    nsenter -t "$(cat "$dir/run/node$i.pid")" -n -u -m -- slurmd -f "$conf" -N "$name" ||
      die "slurmd of $name did not start; see $dir/log/slurmd-$name.log"
  done
  nodes_ready() {
    [ "$(sinfo -h -N -o '%N %T' | grep -cE ' (idle|mixed|allocated)')" -ge "$mn_nodes" ]
  }
  wait_for slurmd 300 nodes_ready ||
    die "the nodes did not become idle ($(sinfo -h -N -o '%N %T %E' | tr '\n' ';')); see $dir/log/slurmd-*.log"
  trap - EXIT

  say "cluster up in $dir: slurmctld on $host ($subnet.1, port $ctld_port); nodes:"
  while read -r name addr _; do say "  $name $addr (slurmd port $slurmd_port)"; done <"$dir/run/nodes"
  say "use it with: source $dir/env.sh"
}

# A start that failed half-way takes down what it made.
mn_abort() {
  local rc=$?
  [ $rc -ne 0 ] || return 0
  say "start failed: removing what was made"
  stop_multi >/dev/null 2>&1 || true
  exit $rc
}

stop_multi() {
  # shellcheck disable=SC1090
  . "$mn_state"
  mn_names
  local jobs i
  if live_pid "$ctld_pid" slurmctld >/dev/null; then
    jobs=$(SLURM_CONF=$conf squeue -h -o '%i' 2>/dev/null || true)
    if [ -n "$jobs" ]; then
      say "cancelling jobs: $(echo $jobs)"
      # shellcheck disable=SC2086
      SLURM_CONF=$conf scancel $jobs 2>/dev/null || true
      for i in $(seq 1 300); do
        [ -z "$(SLURM_CONF=$conf squeue -h -o '%i' 2>/dev/null)" ] && break
        sleep 0.2
      done
    fi
  fi
  for i in $(seq 1 "$mn_nodes"); do stop_one "$dir/run/slurmd-$(node_name "$i").pid" slurmd; done
  stop_one "$ctld_pid" slurmctld
  stop_one "$munged_pid" munged
  for i in $(seq 1 "$mn_nodes"); do stop_one "$dir/run/node$i.pid" sleep >/dev/null; done
  mn_teardown_network
  rm -f "$mn_state"
  say "removed the namespaces and the bridge $bridge"
}

status_multi() {
  # shellcheck disable=SC1090
  . "$mn_state"
  local rc=0 pid i name
  for pair in "$munged_pid munged" "$ctld_pid slurmctld"; do
    set -- $pair
    if pid=$(live_pid "$1" "$2"); then say "$2 running (pid $pid)"; else say "$2 not running"; rc=1; fi
  done
  for i in $(seq 1 "$mn_nodes"); do
    name=$(node_name "$i")
    if pid=$(live_pid "$dir/run/slurmd-$name.pid" slurmd); then
      say "slurmd of $name ($subnet.$((10 + i))) running (pid $pid)"
    else
      say "slurmd of $name ($subnet.$((10 + i))) not running"
      rc=1
    fi
  done
  if live_pid "$ctld_pid" slurmctld >/dev/null; then
    SLURM_CONF=$conf sinfo -N -o '%N %P %T %c %m'
  fi
  return $rc
}

case "$cmd" in
  start) if [ "$nodes" -gt 1 ]; then start_multi; else start; fi ;;
  stop) if [ -f "$mn_state" ]; then stop_multi; else stop; fi ;;
  status) if [ -f "$mn_state" ]; then status_multi; else status; fi ;;
  *) usage ;;
esac
