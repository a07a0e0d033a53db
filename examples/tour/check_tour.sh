#!/usr/bin/env bash
# Usage: check_tour.sh <path-to-corio_tour>
# Passes if the tour exits 0 and prints a line "tour finished" (so a tour that silently stops
# early, yet exits 0, still fails).
set -uo pipefail

tour=${1:?usage: check_tour.sh <path-to-corio_tour>}

# Only stdout is captured for the check; stderr (e.g. sanitizer reports) goes straight to ctest.
output=$("$tour")
status=$?
printf '%s\n' "$output"

if ((status != 0)); then
    echo "check_tour: $tour exited with status $status" >&2
    exit 1
fi
if ! grep -qxF 'tour finished' <<<"$output"; then
    echo "check_tour: $tour did not print the line 'tour finished'" >&2
    exit 1
fi
