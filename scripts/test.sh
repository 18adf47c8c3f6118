#!/usr/bin/env bash
# Runs ruff, the test suite once per Keras backend, the strict docs build and
# the docs' browser test (once: it does not depend on the backend).
# Prints one summary line per backend and exits non-zero if anything failed.
set -u
export TF_CPP_MIN_LOG_LEVEL=3 NO_MKDOCS_2_WARNING=1
BIN=${BIN:-.venv/bin}
BACKENDS=${BACKENDS:-"jax tensorflow torch"}
status=0
summary=()

echo "== ruff"
"$BIN/ruff" check . || status=1

for backend in $BACKENDS; do
  echo "== pytest, KERAS_BACKEND=$backend"
  log=$(mktemp)
  # Each backend is its own process: Keras picks the backend at import time.
  # Whole files go to the two workers in the order tests/conftest.py gives
  # (the slow files first), not xdist's own (the most tests first).
  KERAS_BACKEND=$backend "$BIN/python" -m pytest -n 2 --dist loadfile \
    --no-loadscope-reorder -q \
    -p no:cacheprovider --ignore=tests/docs/test_site.py "$@" tests 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  # pytest's closing line, e.g. "== 250 passed, 1 deselected in 300.00s =="
  last=$(grep -E "^=* *[0-9]+ (passed|failed|errors?|skipped|deselected)|no tests ran" "$log" \
    | tail -n 1 | sed 's/=//g; s/^ *//; s/ *$//')
  summary+=("$backend: ${last:-no summary} (exit $rc)")
  [ "$rc" -eq 0 ] || status=1
  rm -f "$log"
done

echo "== mkdocs build --strict"
"$BIN/mkdocs" build --strict || { status=1; summary+=("docs: FAILED"); }

echo "== docs in headless Chromium (tests/docs/test_site.py)"
log=$(mktemp)
KERAS_BACKEND=jax "$BIN/python" -m pytest -q -p no:cacheprovider \
  tests/docs/test_site.py 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
last=$(grep -E "^=* *[0-9]+ (passed|failed|errors?|skipped)|no tests ran" "$log" \
  | tail -n 1 | sed 's/=//g; s/^ *//; s/ *$//')
summary+=("browser: ${last:-no summary} (exit $rc)")
[ "$rc" -eq 0 ] || status=1
rm -f "$log"

echo
echo "== summary"
for line in "${summary[@]}"; do echo "$line"; done
exit $status
