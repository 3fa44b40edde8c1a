# compute-bridge bare-metal host library (POSIX sh).
#
# Every command the baremetal backend runs on a host is this library, a few
# CB_* variable assignments in front of it and one call after it (see
# script.rs). It keeps everything about a grant on the host, so the
# component remembers nothing between calls:
#
#   $D/lock                  serialises provision/terminate on this host
#   $D/grants/<id>/alloc     "cpu_millicores ram_mib": what placement sums
#   $D/grants/<id>/env       the grant's facts (sourced by the functions below)
#   $D/grants/<id>/cgroups   the grant's cgroup directories, one per line
#   $D/grants/<id>/counters  cumulative usage, updated by cb_sample
#   $D/grants/<id>/login     the forced command of the grant's SSH key
#   $D/grants/<id>/supervise the host-side supervisor (see cb_supervise)
#   $D/home/<id>             the account's home (root-owned; work/ is theirs)
#   $D/ended/<id>            final usage of a terminated grant (kept 7 days)
#
# D is CB_STATE_DIR when running as root, else
# ${XDG_STATE_HOME:-~/.local/state}/compute-bridge.
#
# Output is `key=value` lines on stdout. Exit status 0 is success;
# CB_FULL, CB_BUSY and CB_UNSUPPORTED below are mapped to no-capacity,
# transient and config; anything else is a failure explained on stderr.

set -u
# Nothing here is for other accounts unless chmod says so.
umask 077
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LC_ALL=C
export PATH LC_ALL

CB_FULL=10
CB_BUSY=11
CB_UNSUPPORTED=12

cb_fail() {
	code=$1
	shift
	printf '%s\n' "$*" >&2
	exit "$code"
}

# Quote $1 for this shell.
cb_q() {
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

cb_init() {
	if [ "$(id -u)" -eq 0 ]; then
		CB_ASROOT=1
		D=$CB_STATE_DIR
	else
		CB_ASROOT=0
		D=${XDG_STATE_HOME:-${HOME:?}/.local/state}/compute-bridge
	fi
	G=$D/grants/$CB_ID
	E=$D/ended
}

cb_prepare() {
	mkdir -p "$D/grants" "$E" || cb_fail 70 "cannot create $D"
	if [ "$CB_ASROOT" = 1 ]; then
		mkdir -p "$D/home" || cb_fail 70 "cannot create $D/home"
		# Grant accounts may traverse to their own login and home, not list
		# other grants.
		chmod 711 "$D" "$D/grants" "$D/home"
		chmod 700 "$E"
	fi
}

# Hold the host's grant-table lock (fd 9) until this shell exits.
cb_lock() {
	command -v flock >/dev/null 2>&1 ||
		cb_fail $CB_UNSUPPORTED "flock (util-linux) is missing on this host"
	exec 9>>"$D/lock"
	flock -w 30 9 || cb_fail $CB_BUSY "the host's grant table stayed locked for 30 s"
}

# Hold the grant's own lock (fd 8): the supervisor and calls both update
# its counters.
cb_grant_lock() {
	exec 8>>"$G/lock"
	flock -w 30 8 || cb_fail $CB_BUSY "grant $CB_ID stayed locked for 30 s"
}

# ---------------------------------------------------------------- limits --

# The limit mechanism for the process runtime on this host.
cb_detect() {
	if [ "$CB_ASROOT" != 1 ]; then
		case $CB_LIMITS in
		auto | prlimit)
			echo prlimit
			return 0
			;;
		esac
		cb_fail $CB_UNSUPPORTED "limits = \"$CB_LIMITS\" needs root on this host, and the SSH user is $(id -un)"
	fi
	case $CB_LIMITS in
	auto | systemd)
		if [ -d /run/systemd/system ] && [ -f /sys/fs/cgroup/cgroup.controllers ] &&
			command -v systemd-run >/dev/null 2>&1; then
			echo systemd
			return 0
		fi
		[ "$CB_LIMITS" = systemd ] &&
			cb_fail $CB_UNSUPPORTED "limits = \"systemd\" but systemd with cgroup v2 is not running on this host"
		;;
	esac
	case $CB_LIMITS in
	auto | cgroup)
		if cb_cg2_root >/dev/null; then
			echo cgroup2
			return 0
		fi
		if cb_cg1_ok; then
			echo cgroup1
			return 0
		fi
		[ "$CB_LIMITS" = cgroup ] &&
			cb_fail $CB_UNSUPPORTED "limits = \"cgroup\" but no cgroup hierarchy with cpu and memory is writable on this host"
		;;
	esac
	echo prlimit
}

# The cgroup v2 directory grants go under, with cpu and memory delegated
# to it; fails if there is none.
cb_cg2_root() {
	c=/sys/fs/cgroup
	[ -f $c/cgroup.controllers ] || return 1
	grep -qw cpu $c/cgroup.controllers && grep -qw memory $c/cgroup.controllers || return 1
	r=$c/compute-bridge
	mkdir -p $r 2>/dev/null || return 1
	for k in cpu memory pids; do
		grep -qw $k $c/cgroup.subtree_control || echo "+$k" >$c/cgroup.subtree_control 2>/dev/null
		grep -qw $k $r/cgroup.subtree_control || echo "+$k" >$r/cgroup.subtree_control 2>/dev/null
	done
	grep -qw cpu $r/cgroup.subtree_control && grep -qw memory $r/cgroup.subtree_control || return 1
	echo $r
}

# The cgroup v1 hierarchies a grant gets a directory in, deduplicated
# (cpu and cpuacct are often one hierarchy).
cb_cg1_dirs() {
	for k in cpu cpuacct memory pids; do
		[ -f /sys/fs/cgroup/$k/cgroup.procs ] || continue
		(cd /sys/fs/cgroup/$k && pwd -P)
	done | awk '!seen[$0]++'
}

cb_cg1_ok() {
	dirs=$(cb_cg1_dirs)
	for f in cpu.cfs_quota_us cpuacct.usage memory.limit_in_bytes; do
		found=0
		for d in $dirs; do [ -f "$d/$f" ] && found=1; done
		[ $found = 1 ] || return 1
	done
	for d in $dirs; do
		mkdir -p "$d/compute-bridge" 2>/dev/null && chmod 755 "$d/compute-bridge" || return 1
	done
}

cb_cg1_make() {
	: >"$G/cgroups"
	for d in $(cb_cg1_dirs); do
		g=$d/compute-bridge/$CB_ID
		# Traversable by the account, so its login can join (see below).
		mkdir -p "$g" && chmod 755 "$g" || return 1
		echo "$g" >>"$G/cgroups"
		if [ -f "$g/cpu.cfs_quota_us" ]; then
			echo 100000 >"$g/cpu.cfs_period_us" || return 1
			echo "$CB_CPU_QUOTA_US" >"$g/cpu.cfs_quota_us" || return 1
		fi
		if [ -f "$g/memory.limit_in_bytes" ]; then
			echo "$CB_MEM_BYTES" >"$g/memory.limit_in_bytes" || return 1
			[ -f "$g/memory.memsw.limit_in_bytes" ] &&
				echo "$CB_MEM_BYTES" >"$g/memory.memsw.limit_in_bytes"
		fi
		[ -f "$g/pids.max" ] && echo "$CB_TASKS" >"$g/pids.max"
		# v1 lets a process move itself into a group whose procs file it may
		# write: the login joins at once instead of at the next sweep.
		chown "$CB_ID" "$g/cgroup.procs" "$g/tasks" || return 1
	done
	[ -s "$G/cgroups" ]
}

cb_cg2_make() {
	r=$(cb_cg2_root) || return 1
	g=$r/$CB_ID
	mkdir -p "$g" || return 1
	echo "$CB_CPU_QUOTA_US 100000" >"$g/cpu.max" || return 1
	echo "$CB_MEM_BYTES" >"$g/memory.max" || return 1
	[ -f "$g/memory.swap.max" ] && echo 0 >"$g/memory.swap.max"
	[ -f "$g/pids.max" ] && echo "$CB_TASKS" >"$g/pids.max"
	echo "$g" >"$G/cgroups"
}

# Under systemd the supervisor runs as the unit cb-<id>.service with
# Delegate=yes: it moves itself into a `supervisor` leaf and gives the
# workload the `workload` leaf, so the unit's limits cover the workload and
# the workload's counters leave the supervisor out.
cb_systemd_cgroup() {
	self=$(sed -n 's/^0:://p' /proc/self/cgroup)
	base=/sys/fs/cgroup$self
	mkdir -p "$base/supervisor" "$base/workload" || return 1
	echo $$ >"$base/supervisor/cgroup.procs" || return 1
	echo "+cpu +memory +pids" >"$base/cgroup.subtree_control" 2>/dev/null ||
		echo "+cpu +memory" >"$base/cgroup.subtree_control" || return 1
	echo "$base/workload" >"$G/cgroups.tmp" && mv -f "$G/cgroups.tmp" "$G/cgroups"
}

# -------------------------------------------------------------- accounts --

# The grant's processes: the account's (root), or those carrying the
# grant's marker in their environment (a non-root SSH user runs workloads
# as itself). Zombies are left out.
cb_pids() {
	if [ "$ROOTMODE" = 1 ]; then
		# Never root's processes, whatever went wrong before.
		case ${UID_NUM:-0} in '' | 0) return 0 ;; esac
		pgrep -U "$UID_NUM" -r R,S,D,T,t,I 2>/dev/null
	else
		grep -l -z -x "CB_GRANT=$CB_ID" /proc/[0-9]*/environ 2>/dev/null |
			sed 's#^/proc/\([0-9]*\)/environ$#\1#'
	fi
}

cb_account() {
	H=$D/home/$CB_ID
	if id -u "$CB_ID" >/dev/null 2>&1; then
		# Left by an attempt that failed half-way: adopt it only if it is ours.
		[ "$(getent passwd "$CB_ID" | cut -d: -f5)" = "compute-bridge grant" ] || {
			echo "an account named $CB_ID exists and is not a compute-bridge grant" >&2
			return 1
		}
	else
		login_shell=/bin/sh
		[ -x /bin/bash ] && login_shell=/bin/bash
		# A vm grant's account only runs its QEMU: no login on the host.
		[ "${1:-}" = nologin ] && login_shell=/usr/sbin/nologin
		# `-p '*'`: no password, but not locked (sshd refuses locked
		# accounts when PAM is off).
		# Another tool (or a killed useradd not yet reaped) may hold the
		# account files' locks for a moment: try again before giving up.
		n=0
		until useradd -M -U -d "$H" -s "$login_shell" -p '*' -c "compute-bridge grant" "$CB_ID"; do
			n=$((n + 1))
			[ $n -lt 10 ] && ! id -u "$CB_ID" >/dev/null 2>&1 || return 1
			sleep 0.5
		done
	fi
	UID_NUM=$(id -u "$CB_ID") || return 1
	USER_NAME=$CB_ID
	mkdir -p "$H/.ssh" "$H/work" || return 1
	# The home and the key are root's, so the requester cannot swap the
	# forced command out; work/ is theirs.
	chown root:root "$H" "$H/.ssh" && chmod 755 "$H" "$H/.ssh" || return 1
	chown "$CB_ID:" "$H/work" && chmod 700 "$H/work" || return 1
	[ "${1:-}" = nologin ] && return 0
	printf 'restrict,pty,command="exec %s" %s %s\n' "$G/login" "$CB_KEY" "$CB_ID" \
		>"$H/.ssh/authorized_keys" || return 1
	chmod 644 "$H/.ssh/authorized_keys"
}

# A non-root SSH user: the workload runs as that user, authorised by one
# marked line in its own authorized_keys.
cb_self_account() {
	H=$G
	UID_NUM=$(id -u)
	USER_NAME=$(id -un)
	mkdir -p "$G/work" "$HOME/.ssh" || return 1
	chmod 700 "$HOME/.ssh"
	ak=$HOME/.ssh/authorized_keys
	cb_drop_key "$ak"
	printf 'restrict,pty,command="exec %s" %s compute-bridge:%s\n' "$G/login" "$CB_KEY" "$CB_ID" \
		>>"$ak" || return 1
	chmod 600 "$ak"
}

# Remove account $1, trying again while another process holds the account
# files' locks (a killed useradd's locks stay taken until it is reaped).
cb_userdel() {
	n=0
	while id -u "$1" >/dev/null 2>&1; do
		userdel -f "$1" >/dev/null 2>&1 && return 0
		n=$((n + 1))
		[ $n -lt 20 ] || return 1
		sleep 0.5
	done
}

cb_drop_key() {
	[ -f "$1" ] || return 0
	grep -v " compute-bridge:$CB_ID\$" "$1" >"$1.cb-tmp"
	cat "$1.cb-tmp" >"$1"
	rm -f "$1.cb-tmp"
}

# The forced command of the grant's key: enter the grant's limits, then
# run what the requester asked for (or a login shell).
cb_write_login() {
	{
		echo '#!/bin/sh'
		echo "# compute-bridge: login of grant $CB_ID (limits: $MODE). Removed with the grant."
		echo "CB_GRANT=$CB_ID; export CB_GRANT"
		echo "HOME=$(cb_q "$H/work"); export HOME"
		echo 'cd "$HOME" || exit 1'
		if [ "$MODE" = cgroup1 ]; then
			while read -r g; do
				echo "{ echo \$\$ >$(cb_q "$g/cgroup.procs"); } 2>/dev/null"
			done <"$G/cgroups"
		fi
		if [ "$RUNTIME" = podman ]; then
			echo "exec sudo -n $(cb_q "$G/enter")"
		else
			echo 'if [ -n "${SSH_ORIGINAL_COMMAND:-}" ]; then set -- -c "$SSH_ORIGINAL_COMMAND"; else set -- -l; fi'
			if [ "$MODE" = prlimit ]; then
				lim="--as=$CB_MEM_BYTES"
				[ "$CB_ASROOT" = 1 ] && lim="$lim --nproc=$CB_TASKS"
				echo "exec prlimit $lim -- \"\${SHELL:-/bin/sh}\" \"\$@\""
			else
				echo 'exec "${SHELL:-/bin/sh}" "$@"'
			fi
		fi
	} >"$G/login.tmp" && chmod 755 "$G/login.tmp" && mv -f "$G/login.tmp" "$G/login"
}

cb_write_env() {
	for v in ROOTMODE MODE RUNTIME REQUEST PROVIDER BACKEND CPU RAM VALID_TO CREATED \
		UID_NUM USER_NAME H TICK; do
		eval "val=\${$v}"
		echo "$v=$(cb_q "$val")"
	done >"$G/env.tmp" && chmod 600 "$G/env.tmp" && mv -f "$G/env.tmp" "$G/env"
}

# ------------------------------------------------------------- supervisor --

# The grant's host-side holder: until the grant is removed, every TICK
# seconds it moves the grant's processes into its cgroup (logins start as
# children of sshd, outside it) and updates the usage counters.
cb_supervise() {
	. "$G/env"
	echo $$ >"$G/supervisor.pid"
	if [ "$MODE" = systemd ] && ! cb_systemd_cgroup; then
		echo 1 >"$G/exit"
		exit 1
	fi
	exec 8>>"$G/lock"
	while [ -f "$G/env" ]; do
		cb_sweep
		flock 8 && cb_sample && flock -u 8
		sleep "$TICK"
	done
}

cb_sweep() {
	case $MODE in
	cgroup1 | cgroup2 | systemd) ;;
	*) return 0 ;;
	esac
	[ -f "$G/cgroups" ] || return 0
	for p in $(cb_pids); do
		while read -r g; do echo "$p" >"$g/cgroup.procs" 2>/dev/null; done <"$G/cgroups"
	done
}

cb_supervisor_alive() {
	if [ "$MODE" = systemd ]; then
		systemctl is-active --quiet "$CB_ID.service"
		return
	fi
	p=$(cat "$G/supervisor.pid" 2>/dev/null) || return 1
	[ -n "$p" ] && [ -r "/proc/$p/cmdline" ] &&
		tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF "$G/supervise"
}

cb_start_supervisor() {
	{
		echo '#!/bin/sh'
		echo "# compute-bridge: supervisor of grant $CB_ID. Removed with the grant."
		echo ". $(cb_q "$G/lib.sh")"
		echo "CB_STATE_DIR=$(cb_q "$CB_STATE_DIR"); CB_ID=$CB_ID"
		echo 'cb_init; cb_supervise'
	} >"$G/supervise" || return 1
	cb_lib_text >"$G/lib.sh" || return 1
	if [ "$MODE" = systemd ]; then
		eval "set -- $CB_SYSTEMD_RUN"
		"$@" /bin/sh "$G/supervise" 9>&- 8>&- || return 1
		i=0
		while [ ! -s "$G/cgroups" ]; do
			[ $i -lt 100 ] || return 1
			[ -f "$G/exit" ] && return 1
			i=$((i + 1))
			sleep 0.1
		done
	else
		# Detached from this session, without our lock or pipes.
		if command -v setsid >/dev/null 2>&1; then
			setsid /bin/sh "$G/supervise" </dev/null >/dev/null 2>&1 9>&- 8>&- &
		else
			nohup /bin/sh "$G/supervise" </dev/null >/dev/null 2>&1 9>&- 8>&- &
		fi
	fi
}

# ------------------------------------------------------------------ usage --

# Cumulative CPU of the grant, microseconds (monotonic until it resets;
# cb_sample folds resets in).
cb_cpu_usec() {
	if [ "$MODE" = prlimit ]; then
		cb_ledger
		return
	fi
	[ -f "$G/cgroups" ] || {
		echo 0
		return
	}
	while read -r g; do
		if [ -f "$g/cpuacct.usage" ]; then
			echo $(($(cat "$g/cpuacct.usage") / 1000))
			return
		fi
		if [ -f "$g/cpu.stat" ] && grep -q '^usage_usec ' "$g/cpu.stat"; then
			sed -n 's/^usage_usec //p' "$g/cpu.stat"
			return
		fi
	done <"$G/cgroups"
	echo 0
}

# Memory the grant holds now, KiB: the cgroup's charge (including page
# cache), or the processes' resident sets under prlimit.
cb_mem_kib() {
	if [ "$MODE" = prlimit ]; then
		files=
		for p in $(cb_pids); do files="$files /proc/$p/status"; done
		[ -n "$files" ] || {
			echo 0
			return
		}
		# shellcheck disable=SC2086
		sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' $files 2>/dev/null |
			awk '{ s += $1 } END { printf "%.0f\n", s }'
		return
	fi
	[ -f "$G/cgroups" ] || {
		echo 0
		return
	}
	while read -r g; do
		for f in memory.usage_in_bytes memory.current; do
			if [ -f "$g/$f" ]; then
				echo $(($(cat "$g/$f") / 1024))
				return
			fi
		done
	done <"$G/cgroups"
	echo 0
}

# Network bytes in and out: the container's interfaces (podman); the
# process runtime shares the host's network and measures none.
cb_net_bytes() {
	if [ "$RUNTIME" = podman ] && [ -n "${CPID:-}" ] && [ -r "/proc/$CPID/net/dev" ]; then
		sed 1,2d "/proc/$CPID/net/dev" | tr ':' ' ' |
			awk '$1 != "lo" { s += $2 + $10 } END { printf "%.0f\n", s }'
	else
		echo 0
	fi
}

# CPU under prlimit, sampled: the most CPU each of the grant's processes
# was seen to have used (utime+stime, by pid and start time), with the
# processes that have gone folded into one `dead` total. A process that
# lives less than one tick, and the last tick of each process, are missed.
cb_ledger() {
	hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
	{
		[ -f "$G/ledger" ] && cat "$G/ledger"
		for p in $(cb_pids); do
			read -r l <"/proc/$p/stat" 2>/dev/null || continue
			# Fields after the command name; utime is the 12th, starttime the 20th.
			r=${l##*) }
			# shellcheck disable=SC2086
			set -- $r
			echo "live $p ${20} $((${12} + ${13}))"
		done
	} | awk '
		$1 == "dead" { dead += $2 }
		$1 == "seen" { k = $2 " " $3; if ($4 > seen[k]) seen[k] = $4 }
		$1 == "live" { k = $2 " " $3; live[k] = 1; if ($4 > seen[k]) seen[k] = $4 }
		END {
			for (k in seen) if (!(k in live)) dead += seen[k]
			printf "dead %.0f\n", dead
			for (k in seen) if (k in live) printf "seen %s %.0f\n", k, seen[k]
		}' >"$G/ledger.tmp" && mv -f "$G/ledger.tmp" "$G/ledger"
	awk -v hz="$hz" '$1 == "dead" { s += $2 } $1 == "seen" { s += $4 }
		END { printf "%.0f\n", s * 1000000 / hz }' "$G/ledger"
}

# The container's cgroup directories and main pid (podman).
cb_podman_cgroups() {
	CPID=$(podman inspect --format '{{.State.Pid}}' "$CB_ID" 2>/dev/null || echo 0)
	[ "${CPID:-0}" -gt 0 ] 2>/dev/null || return 0
	v2=/sys/fs/cgroup
	[ -f $v2/cgroup.controllers ] || v2=/sys/fs/cgroup/unified
	awk -F: -v v2="$v2" '
		$2 == "" { print v2 $3; next }
		$2 ~ /cpuacct|memory/ { print "/sys/fs/cgroup/" $2 $3 }' "/proc/$CPID/cgroup" \
		>"$G/cgroups.tmp" 2>/dev/null && mv -f "$G/cgroups.tmp" "$G/cgroups"
}

# Update the counters: CPU and network as monotonic totals (a counter that
# went backwards was reset, so its last value is banked), memory integrated
# over time (trapezoids between samples).
cb_sample() {
	now=$(date +%s)
	cpu_base=0 cpu_last=0 net_base=0 net_last=0 ram_kib_s=0 mem_kib=0 at=$now
	[ -f "$G/counters" ] && . "$G/counters"
	prev_mem=$mem_kib
	[ "$RUNTIME" = podman ] && cb_podman_cgroups
	cpu=$(cb_cpu_usec)
	mem_kib=$(cb_mem_kib)
	net=$(cb_net_bytes)
	cpu=${cpu:-0} mem_kib=${mem_kib:-0} net=${net:-0}
	[ "$cpu" -lt "$cpu_last" ] && cpu_base=$((cpu_base + cpu_last))
	cpu_last=$cpu
	[ "$net" -lt "$net_last" ] && net_base=$((net_base + net_last))
	net_last=$net
	dt=$((now - at))
	[ $dt -lt 0 ] && dt=0
	ram_kib_s=$((ram_kib_s + (prev_mem + mem_kib) * dt / 2))
	cat >"$G/counters.tmp" <<EOF
cpu_base=$cpu_base
cpu_last=$cpu_last
net_base=$net_base
net_last=$net_last
ram_kib_s=$ram_kib_s
mem_kib=$mem_kib
at=$now
EOF
	mv -f "$G/counters.tmp" "$G/counters"
}

cb_print_usage() {
	cpu_base=0 cpu_last=0 net_base=0 net_last=0 ram_kib_s=0
	. "$1"
	echo "cpu_usec=$((cpu_base + cpu_last))"
	echo "ram_kib_s=$ram_kib_s"
	echo "net_bytes=$((net_base + net_last))"
}

# ------------------------------------------------------------------ podman --

cb_podman_check() {
	[ "$CB_ASROOT" = 1 ] || cb_fail $CB_UNSUPPORTED "runtime = \"podman\" needs root on this host"
	[ -x /usr/bin/podman ] ||
		cb_fail $CB_UNSUPPORTED "runtime = \"podman\" but /usr/bin/podman is missing on this host"
	command -v sudo >/dev/null 2>&1 ||
		cb_fail $CB_UNSUPPORTED "runtime = \"podman\" needs sudo on this host (logins enter the container through a per-grant sudoers rule)"
	command -v runc >/dev/null 2>&1 ||
		cb_fail $CB_UNSUPPORTED "runtime = \"podman\" runs containers with runc, which is missing on this host (apt-get install runc)"
}

# The grant's podman command line (the quoted words in $1), with rlimits
# inserted after `run` that this host can grant: as root podman asks for
# 1048576 open files and 4194304 processes, and runc fails ("error
# setting rlimit type 7 [or 6]: operation not permitted") where the hard
# limits are lower. Open files: the host's own hard limit. Processes: that
# limit, at most pid_max (above it runc failed on the test machine); the
# grant's real process limit is its pids cgroup (--pids-limit).
cb_podman_cmd() {
	nf=$(ulimit -Hn) np=$(ulimit -Hu)
	pm=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
	case $np in '' | *[!0-9]*) np=$pm ;; esac
	[ "$np" -gt "$pm" ] && np=$pm
	lim="--ulimit=nproc=$np:$np"
	case $nf in '' | *[!0-9]*) ;; *) lim="$lim --ulimit=nofile=$nf:$nf" ;; esac
	eval "set -- $1"
	out= seen=
	for w in "$@"; do
		out="$out $(cb_q "$w")"
		if [ "$w" = run ] && [ -z "$seen" ]; then
			seen=1
			out="$out $lim"
		fi
	done
	echo "$out"
}

cb_podman_setup() {
	cb_account || return 1
	# The only command the account may run as root: exec into its own
	# container, with the requester's command as one argument of sh -c.
	{
		echo '#!/bin/sh'
		echo "# compute-bridge: enter the container of grant $CB_ID. Removed with the grant."
		echo 't=; [ -t 0 ] && t=--tty'
		echo "exec /usr/bin/podman exec --interactive \$t $CB_ID /bin/sh -c \"\${SSH_ORIGINAL_COMMAND:-exec /bin/sh -l}\""
	} >"$G/enter" && chmod 755 "$G/enter" || return 1
	s=/etc/sudoers.d/$CB_ID
	printf '%s\n' "$CB_SUDOERS" >"$s.tmp" && chmod 440 "$s.tmp" || return 1
	if command -v visudo >/dev/null 2>&1 && ! visudo -cqf "$s.tmp"; then
		rm -f "$s.tmp"
		return 1
	fi
	mv -f "$s.tmp" "$s" || return 1
	cb_write_env && cb_write_login || return 1
	# Pulling may take a while: start the container in the background;
	# status says `starting` until it runs.
	if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
		eval "set -- $(cb_podman_cmd "$CB_PODMAN_SYSTEMD")"
		"$@" </dev/null >"$G/launch.log" 2>&1 9>&- 8>&- || return 1
		echo systemd >"$G/launcher"
	else
		eval "set -- $(cb_podman_cmd "$CB_PODMAN_DETACHED")"
		# In a session of its own where setsid exists, so it outlives this
		# command (the bridge's local transport kills the command's process
		# group when the command ends). From the grant's directory: conmon
		# keeps podman's working directory and writes an `oom` file there
		# when the container hits its memory limit.
		launch='g=$1; shift; cd "$g" || exit 1; "$@" </dev/null >"$g/launch.log" 2>&1; echo $? >"$g/launch.exit"'
		if command -v setsid >/dev/null 2>&1; then
			setsid /bin/sh -c "$launch" cb-launch "$G" "$@" 9>&- 8>&- &
		else
			/bin/sh -c "$launch" cb-launch "$G" "$@" 9>&- 8>&- &
		fi
		echo $! >"$G/launcher"
	fi
	cb_start_supervisor
}

cb_podman_launcher_alive() {
	l=$(cat "$G/launcher" 2>/dev/null) || return 1
	if [ "$l" = systemd ]; then
		systemctl is-active --quiet "$CB_ID.service"
	else
		[ -n "$l" ] && kill -0 "$l" 2>/dev/null
	fi
}

cb_podman_status() {
	st=$(podman inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$CB_ID" 2>/dev/null)
	case ${st%% *} in
	running) echo state=running ;;
	exited | stopped)
		echo state=exited
		echo "code=${st##* }"
		;;
	*)
		if cb_podman_launcher_alive; then
			echo state=starting
		else
			echo state=exited
			echo "code=$(cat "$G/launch.exit" 2>/dev/null || echo -1)"
		fi
		;;
	esac
}

# -------------------------------------------------------------------- vm --

cb_vm_check() {
	[ "$CB_ASROOT" = 1 ] || cb_fail $CB_UNSUPPORTED "runtime = \"vm\" needs root on this host"
	command -v qemu-system-x86_64 >/dev/null 2>&1 ||
		cb_fail $CB_UNSUPPORTED "runtime = \"vm\" but qemu-system-x86_64 is missing on this host (apt-get install qemu-system-x86)"
	command -v perl >/dev/null 2>&1 ||
		cb_fail $CB_UNSUPPORTED "runtime = \"vm\" needs perl on this host (QMP)"
	command -v ssh-keygen >/dev/null 2>&1 ||
		cb_fail $CB_UNSUPPORTED "runtime = \"vm\" needs ssh-keygen on this host (openssh-client)"
	for f in "$CB_VM_KERNEL" "$CB_VM_INITRD"; do
		[ -r "$f" ] ||
			cb_fail $CB_UNSUPPORTED "runtime = \"vm\": $f is missing on this host (scripts/guest/build-guest.sh builds a guest)"
	done
}

# One QMP command ($2, arguments $3 as JSON) on socket $1; prints the
# reply. perl-base is Essential on Debian (socat and nc -U are not).
cb_qmp() {
	perl -MIO::Socket::UNIX -e '
		my ($sock, $cmd, $args) = @ARGV;
		$SIG{ALRM} = sub { exit 1 };
		alarm 5;
		my $s = IO::Socket::UNIX->new(Peer => $sock) or exit 1;
		$s->autoflush(1);
		<$s>;
		print $s "{\"execute\":\"qmp_capabilities\"}\n";
		<$s>;
		my $a = $args eq "" ? "" : ",\"arguments\":$args";
		print $s "{\"execute\":\"$cmd\"$a}\n";
		while (my $l = <$s>) {
			next if $l =~ /"event":/;
			print $l;
			exit($l =~ /^\{"return"/ ? 0 : 1);
		}
		exit 1;' "$1" "$2" "${3:-}"
}

cb_vm_alive() {
	p=$(cat "$G/vm/qemu.pid" 2>/dev/null) || return 1
	[ -n "$p" ] && [ -r "/proc/$p/cmdline" ] &&
		tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF "$G/vm/qmp.sock"
}

cb_vm_setup() {
	cb_account nologin || return 1
	case $MODE in
	cgroup1) cb_cg1_make ;;
	cgroup2) cb_cg2_make ;;
	esac || return 1
	V=$G/vm
	mkdir -p "$V" && chmod 700 "$V" || return 1
	printf '%s' "$CB_ID" >"$V/user" || return 1
	printf '%s\n' "$CB_KEY" >"$V/authorized_keys" || return 1
	# A plain VM's host key is made here, so the access bundle can carry it
	# before the guest boots. A TD makes its own: the host must not hold
	# the key a TD answers with.
	if [ "${CB_TDX:-0}" != 1 ]; then
		ssh-keygen -q -t ed25519 -N '' -C "$CB_ID" -f "$V/host_key" || return 1
	fi
	cb_write_env || return 1
	eval "set -- $CB_QEMU"
	# QEMU starts inside the grant's cgroups (memory it touches is charged
	# there, which moving it later would not do under v1) and daemonizes
	# once its sockets are ready.
	/bin/sh -c 'while read -r c; do echo $$ >"$c/cgroup.procs" || exit 1; done <"$1"; shift; cd "$1" && shift && exec "$@"' \
		cb-qemu "$G/cgroups" "$V" "$@" </dev/null >"$V/launch.log" 2>&1 9>&- 8>&- || {
		cat "$V/launch.log"
		return 1
	}
	port=$(cb_qmp "$V/qmp.sock" human-monitor-command '{"command-line":"info usernet"}' |
		sed 's/\\r\\n/\n/g' | awk '$1 == "TCP[HOST_FORWARD]" { print $4; exit }')
	[ -n "$port" ] || {
		echo "QEMU reported no forwarded port"
		return 1
	}
	echo "$port" >"$V/port"
	cb_start_supervisor
}

cb_vm_status() {
	if cb_vm_alive; then
		echo state=running
	else
		echo state=exited
		c=$(sed -n 's/.*cb-guest: workload exited with \([0-9]*\).*/\1/p' "$G/vm/serial.log" 2>/dev/null | tail -n 1)
		echo "code=${c:--1}"
	fi
}

# Stop the grant's QEMU: QMP `quit`, then SIGKILL after 2 s. Alive means
# its pid still runs QEMU with this grant's socket (not a zombie waiting
# to be reaped, nor a reused pid).
cb_vm_stop() {
	cb_vm_alive || return 0
	p=$(cat "$G/vm/qemu.pid")
	cb_qmp "$G/vm/qmp.sock" quit >/dev/null 2>&1
	i=0
	while cb_vm_alive && [ $i -lt 20 ]; do
		i=$((i + 1))
		sleep 0.1
	done
	cb_vm_alive && kill -KILL "$p" 2>/dev/null
	return 0
}

# ------------------------------------------------------------ operations --

cb_provision() {
	cb_prepare
	cb_lock
	cb_sweep_partial
	if [ -f "$G/env" ]; then
		. "$G/env"
		[ "$REQUEST" = "$CB_REQUEST" ] ||
			cb_fail 70 "grant id $CB_ID is taken by another request on this host"
		cb_report
		return 0
	fi
	# A TDX-required grant runs in a TD guest or not at all: never as an
	# account or a container on this host (placement already says so; this
	# holds whatever the caller decided).
	if [ "${CB_TDX:-0}" = 1 ] && { [ "$CB_RUNTIME" != vm ] || [ "${CB_VM_TD:-0}" != 1 ]; }; then
		cb_fail $CB_UNSUPPORTED "a TDX-required grant runs only in a TD guest, and this host has no TD runtime: refusing to make it a Unix account, a container or a plain VM"
	fi
	case $CB_RUNTIME in
	process | podman | vm) ;;
	*) cb_fail $CB_UNSUPPORTED "runtime = \"$CB_RUNTIME\" is not supported by this host library" ;;
	esac
	# Room: the sum of what the grants here hold.
	set -- $(cat "$D"/grants/*/alloc 2>/dev/null | awk '{ c += $1; r += $2 } END { printf "%.0f %.0f\n", c, r }')
	if [ $(($1 + CB_CPU)) -gt "$CB_CAP_CPU" ] || [ $(($2 + CB_RAM)) -gt "$CB_CAP_RAM" ]; then
		cb_fail $CB_FULL "host full: $1 of $CB_CAP_CPU millicores and $2 of $CB_CAP_RAM MiB are held by grants"
	fi
	if [ "$CB_RUNTIME" = podman ]; then
		cb_podman_check
		MODE=podman
	elif [ "$CB_RUNTIME" = vm ]; then
		cb_vm_check
		# QEMU runs in a cgroup per grant: its CPU quota, memory limit and
		# meter.
		MODE=$(CB_LIMITS=cgroup cb_detect) || exit $?
	else
		MODE=$(cb_detect) || exit $?
	fi
	mkdir -m 700 "$G" || cb_fail 70 "cannot create $G"
	[ "$CB_ASROOT" = 1 ] && chmod 711 "$G"
	echo "$CB_CPU $CB_RAM" >"$G/alloc"
	ROOTMODE=$CB_ASROOT RUNTIME=$CB_RUNTIME REQUEST=$CB_REQUEST PROVIDER=$CB_PROVIDER
	BACKEND=$CB_BACKEND CPU=$CB_CPU RAM=$CB_RAM VALID_TO=$CB_VALID_TO TICK=$CB_TICK
	CREATED=$(date +%s)
	if ! cb_setup >"$G/setup.log" 2>&1; then
		why=$(tail -n 5 "$G/setup.log" | tr '\n' ' ')
		cb_remove >/dev/null 2>&1
		cb_fail 70 "setting up $CB_ID ($MODE) failed: $why"
	fi
	cb_report
}

cb_setup() {
	if [ "$RUNTIME" = podman ]; then
		cb_podman_setup
		return
	fi
	if [ "$RUNTIME" = vm ]; then
		cb_vm_setup
		return
	fi
	if [ "$CB_ASROOT" = 1 ]; then cb_account; else cb_self_account; fi || return 1
	case $MODE in
	cgroup1) cb_cg1_make ;;
	cgroup2) cb_cg2_make ;;
	esac || return 1
	cb_write_env && cb_start_supervisor && cb_write_login
}

cb_report() {
	echo "user=$USER_NAME"
	echo "root=$CB_ASROOT"
	echo "limits=$MODE"
	if [ "$RUNTIME" = vm ]; then
		# The guest's own port and (plain VMs) its per-grant host key.
		echo "port=$(cat "$G/vm/port")"
		[ -r "$G/vm/host_key.pub" ] && echo "host_key=$(cat "$G/vm/host_key.pub")"
	else
		k=/etc/ssh/ssh_host_ed25519_key.pub
		[ -r $k ] && echo "host_key=$(cat $k)"
	fi
	echo "host_cpus=$(nproc 2>/dev/null || echo 0)"
	echo "host_ram_mib=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 }' /proc/meminfo)"
}

cb_status() {
	if [ ! -f "$G/env" ]; then
		echo state=gone
		return 0
	fi
	. "$G/env"
	echo "limits=$MODE"
	if [ "$RUNTIME" = podman ]; then
		cb_podman_status
	elif [ "$RUNTIME" = vm ]; then
		cb_vm_status
	elif cb_supervisor_alive; then
		echo state=running
	else
		echo state=exited
		echo "code=$(cat "$G/exit" 2>/dev/null || echo -1)"
	fi
}

cb_usage() {
	if [ -f "$G/env" ]; then
		. "$G/env"
		cb_grant_lock
		cb_sample
		echo "limits=$MODE"
		cb_print_usage "$G/counters"
	elif [ -f "$E/$CB_ID" ]; then
		echo "limits=$(sed -n 's/^MODE=//p' "$E/$CB_ID")"
		cb_print_usage "$E/$CB_ID"
	else
		echo state=unknown
	fi
}

cb_kill_all() {
	i=0
	while [ $i -lt 50 ]; do
		pids=$(cb_pids)
		[ -z "$pids" ] && return 0
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null
		i=$((i + 1))
		sleep 0.1
	done
	echo "processes of $CB_ID survived SIGKILL: $pids" >&2
	return 1
}

# Remove the cgroup directories named on stdin (one per line), each with
# the groups under it; absent ones are skipped. A group a process is still
# leaving cannot be removed yet (EBUSY): retry for up to 2 s.
cb_rmdir_groups() {
	groups=$(cat)
	for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
		busy=
		while IFS= read -r c; do
			[ -n "$c" ] && [ -d "$c" ] || continue
			find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
			[ -d "$c" ] && busy=1
		done <<-EOF
			$groups
		EOF
		[ -z "$busy" ] && return 0
		sleep 0.1
	done
	return 1
}

# Remove everything of the grant except its final usage.
cb_remove() {
	if [ "$MODE" = systemd ] || [ "$(cat "$G/launcher" 2>/dev/null)" = systemd ]; then
		systemctl stop "$CB_ID.service" 2>/dev/null
	fi
	if cb_supervisor_alive; then kill "$(cat "$G/supervisor.pid")" 2>/dev/null; fi
	[ "$RUNTIME" = vm ] && cb_vm_stop
	if [ "$RUNTIME" = podman ]; then
		l=$(cat "$G/launcher" 2>/dev/null)
		[ -n "$l" ] && [ "$l" != systemd ] && kill "$l" 2>/dev/null
		(cd "$G" && podman rm --force --time 0 "$CB_ID") >/dev/null 2>&1
		rm -f "/etc/sudoers.d/$CB_ID"
		# podman removes the container's own cgroups, not the parent it
		# was given (nor conmon's group in it, and conmon may still be
		# exiting after `podman rm` returns), in every hierarchy.
		printf '%s\n' /sys/fs/cgroup/*/compute-bridge/"$CB_ID" /sys/fs/cgroup/compute-bridge/"$CB_ID" |
			cb_rmdir_groups
	fi
	cb_kill_all
	[ "$MODE" != podman ] && [ -f "$G/cgroups" ] && cb_rmdir_groups <"$G/cgroups"
	if [ "${ROOTMODE:-$CB_ASROOT}" = 1 ]; then
		if [ "${UID_NUM:-0}" -gt 0 ] 2>/dev/null; then
			find /tmp /var/tmp /dev/shm -xdev -user "$UID_NUM" -depth -delete 2>/dev/null
		fi
		cb_userdel "$CB_ID"
		rm -rf "$D/home/$CB_ID"
	else
		cb_drop_key "$HOME/.ssh/authorized_keys"
	fi
	rm -rf "$G"
}

# A grant whose provision died before writing its env (the session
# dropped with its shell, the host went down): remove whatever of it was
# made. Nothing of it runs yet (the supervisor and logins start only once
# env exists), and the account is removed only if it is a grant's.
cb_remove_partial() {
	if [ "$CB_ASROOT" = 1 ]; then
		if [ "$(getent passwd "$CB_ID" | cut -d: -f5)" = "compute-bridge grant" ]; then
			uid=$(id -u "$CB_ID")
			[ "${uid:-0}" -gt 0 ] 2>/dev/null && pkill -KILL -U "$uid" 2>/dev/null
			cb_userdel "$CB_ID"
		fi
		rm -f "/etc/sudoers.d/$CB_ID" "/etc/sudoers.d/$CB_ID.tmp"
		rm -rf "$D/home/$CB_ID"
		for c in $(cb_cg1_dirs) /sys/fs/cgroup; do
			rmdir "$c/compute-bridge/$CB_ID" 2>/dev/null
		done
	else
		cb_drop_key "$HOME/.ssh/authorized_keys"
	fi
	rm -rf "$G"
}

# Under the host lock no provision is half-way, so a grant directory
# without env was left by one that died: remove it and what it made (its
# alloc would otherwise hold room on this host for ever).
cb_sweep_partial() {
	for g in "$D"/grants/cb-*; do
		[ -d "$g" ] && [ ! -f "$g/env" ] || continue
		(
			CB_ID=${g##*/}
			G=$g
			cb_remove_partial
		) >/dev/null 2>&1
	done
}

cb_terminate() {
	cb_lock
	if [ ! -f "$G/env" ]; then
		[ -d "$G" ] && cb_remove_partial >/dev/null 2>&1
		echo state=gone
		return 0
	fi
	. "$G/env"
	cb_grant_lock
	# Sample before and after the kill: memory and process times while they
	# run, the cgroup's final CPU once they are gone.
	cb_sample
	cb_kill_all
	cb_sample
	{
		cat "$G/counters"
		echo "MODE=$MODE"
	} >"$E/$CB_ID.tmp" && mv -f "$E/$CB_ID.tmp" "$E/$CB_ID"
	cb_remove
	find "$E" -type f -mtime +7 -exec rm -f {} + 2>/dev/null
	echo state=terminated
}

cb_list() {
	for e in "$D"/grants/cb-*/env; do
		[ -f "$e" ] || continue
		(
			. "$e"
			[ "$PROVIDER" = "$CB_PROVIDER" ] && [ "$BACKEND" = "$CB_BACKEND" ] || exit 0
			g=${e%/env}
			echo "grant=${g##*/} user=$USER_NAME limits=$MODE runtime=$RUNTIME port=$(cat "$g/vm/port" 2>/dev/null)"
		)
	done
}
