#!/usr/bin/env bash
# Runs a command inside a memory cgroup limited to LIMIT bytes (page cache included), when one
# can be made (cgroup v2 or v1, as root); otherwise runs it directly and says so. Prints the
# cgroup's peak memory use after the command.
#   scripts/run-in-memcg.sh LIMIT_BYTES command args...
set -u
limit="$1"; shift
name="strata-$$"
v2=/sys/fs/cgroup
v1=/sys/fs/cgroup/memory
dir=""
if [ -f "$v2/cgroup.controllers" ] && mkdir "$v2/$name" 2>/dev/null; then
    dir="$v2/$name"
    echo "$limit" > "$dir/memory.max" && echo 0 > "$dir/memory.swap.max" 2>/dev/null
    peakfile="$dir/memory.peak"
elif [ -d "$v1" ]; then
    # cgroup v1: a child of this process's own memory cgroup, as /proc/self/cgroup names it
    own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
    if [ -n "$own" ] && [ -d "$v1$own" ] && mkdir "$v1$own/$name" 2>/dev/null; then
        dir="$v1$own/$name"
    elif mkdir "$v1/$name" 2>/dev/null; then
        dir="$v1/$name"
    fi
fi
if [ -n "$dir" ] && [ -f "$dir/memory.limit_in_bytes" ]; then
    echo "$limit" > "$dir/memory.limit_in_bytes"
    peakfile="$dir/memory.max_usage_in_bytes"
fi
if [ -z "$dir" ]; then
    echo "memcg: no memory cgroup can be made here; running without a hard limit" >&2
    "$@"
    exit $?
fi
echo "memcg: running in $dir with a limit of $limit bytes (page cache included)" >&2
( echo $BASHPID > "$dir/cgroup.procs" && exec "$@" )
rc=$?
if [ -f "$peakfile" ]; then echo "memcg: peak memory use of the cgroup: $(cat "$peakfile") bytes" >&2; fi
echo "memcg: exit status $rc" >&2
rmdir "$dir" 2>/dev/null || true
exit $rc
