#!/bin/sh
# From a VM suite's log (guest-suite.sh prints `oomtrace doctor` as "doctor: " lines), the two
# table columns: mark_victim's form and the kprobes `run` uses.
# Usage: doctor_abi.sh RESULTS_LOG   → "mark_victim=task|pid-only|? kprobes=a+b|none"
log="$1"
form=$(sed -n 's/^doctor: mark_victim *//p' "$log" | tr -d '\r' | head -1)
case "$form" in
    *"victim task"*) form=task ;;
    *"pid only"*) form=pid-only ;;
    *) form="?" ;;
esac
kprobes=$(sed -n 's/^doctor: *kprobe \([^ ]*\) .*/\1 &/p' "$log" | tr -d '\r' \
    | grep -v -e "not available" -e "not traceable" | cut -d' ' -f1 | paste -sd+ -)
echo "mark_victim=$form kprobes=${kprobes:-none}"
