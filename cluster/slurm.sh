#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the `slurm` tests and for trying the launcher:
#   sudo bash cluster/slurm.sh start    # munge, MariaDB + slurmdbd (accounting), slurmctld, slurmd; idempotent
#   sudo bash cluster/slurm.sh status   # sinfo, and whether accounting answers
#   sudo bash cluster/slurm.sh stop     # every daemon it started, the jobs cancelled first
# Debian 12's packages (apt-get install slurmctld slurmd slurm-client munge slurmdbd mariadb-server),
# run as plain daemons (no systemd), as root. The configs are made from cluster/slurm.conf.in and
# cluster/slurmdbd.conf.in with this machine's name, CPUs and memory; docs/scale-out.md ("A one-node
# cluster") says what each part is for and what changes on a real cluster.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cluster=mnist
host="$(hostname)"
etc=/etc/slurm
logs=/var/log/slurm

say() { printf 'cluster/slurm.sh: %s\n' "$*"; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  say "gave up waiting for $what"; return 1
}

running() { pgrep -x "$1" >/dev/null; }

install_packages() {
  local needed=()
  for pkg in slurmctld slurmd slurm-client munge slurmdbd mariadb-server; do
    dpkg -s "$pkg" >/dev/null 2>&1 || needed+=("$pkg")
  done
  if [ ${#needed[@]} -gt 0 ]; then
    say "installing ${needed[*]}"
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${needed[@]}" >/dev/null
  fi
}

start_munge() {
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 400 /etc/munge/munge.key
  running munged || su -s /bin/sh munge -c /usr/sbin/munged
  wait_for 10 munge munge -n
}

start_accounting() {
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  if ! running mariadbd && ! running mysqld; then
    (mysqld_safe --user=mysql >/dev/null 2>&1 &)
  fi
  wait_for 60 MariaDB mysqladmin ping
  mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  mkdir -p "$etc" "$logs"
  sed -e "s/@HOST@/$host/g" "$here/slurmdbd.conf.in" >"$etc/slurmdbd.conf"
  chmod 600 "$etc/slurmdbd.conf"
  running slurmdbd || slurmdbd
  wait_for 60 slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/6819"
}

write_slurm_conf() {
  local cpus memory
  cpus="$(nproc)"
  memory="$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
  memory=$((memory * 9 / 10))  # leave the rest to the system
  mkdir -p "$etc" "$logs" /var/spool/slurmctld /var/spool/slurmd
  sed -e "s/@HOST@/$host/g" -e "s/@CLUSTER@/$cluster/g" -e "s/@CPUS@/$cpus/g" -e "s/@MEMORY@/$memory/g" \
    "$here/slurm.conf.in" >"$etc/slurm.conf"
}

start() {
  if running slurmctld && running slurmd && sinfo -h >/dev/null 2>&1; then
    say "already running"; status; return 0
  fi
  install_packages
  start_munge
  start_accounting
  write_slurm_conf
  sacctmgr -i add cluster "$cluster" >/dev/null 2>&1 || true  # exists already: fine
  running slurmctld || slurmctld
  wait_for 30 slurmctld scontrol ping
  running slurmd || slurmd
  wait_for 30 "the node to be idle" bash -c "sinfo -h -o %T | grep -qx idle"
  say "started"; status
}

status() {
  sinfo
  if sacct -n -X -S now-1minutes >/dev/null 2>&1; then say "accounting answers (sacct)"; else say "accounting does not answer"; fi
}

stop() {
  scancel --full --user=root >/dev/null 2>&1 || true
  for daemon in slurmd slurmctld slurmdbd; do pkill -x "$daemon" || true; done
  mysqladmin shutdown >/dev/null 2>&1 || true
  pkill -x munged || true
  wait_for 30 "the daemons to stop" bash -c "! pgrep -x 'slurmd|slurmctld|slurmdbd|mariadbd|mysqld|munged'"
  say "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: bash cluster/slurm.sh start|status|stop" >&2; exit 2 ;;
esac
