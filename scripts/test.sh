#!/usr/bin/env bash
# Runs ruff, the test suite once per Keras backend, and (beside them, in the
# background) the strict docs build with the docs' browser test (once: it
# does not depend on the backend).
# Prints one summary line per backend and exits non-zero if anything failed.
set -u
export TF_CPP_MIN_LOG_LEVEL=3 NO_MKDOCS_2_WARNING=1
BIN=${BIN:-.venv/bin}
BACKENDS=${BACKENDS:-"jax tensorflow torch"}
status=0
summary=()

echo "== ruff"
"$BIN/ruff" check . || status=1

# The docs' browser test builds the site itself with `mkdocs build --strict`
# (a failed build fails it) and then checks it in headless Chromium. It
# hardly depends on the backend runs, so it runs beside them, in the
# background, filling the moments the test workers leave a core idle; its
# output is printed after theirs.
docs_log=$(mktemp)
(
  echo "== docs: mkdocs build --strict and headless Chromium (tests/docs/test_site.py)"
  KERAS_BACKEND=jax "$BIN/python" -m pytest -q -p no:cacheprovider \
    tests/docs/test_site.py
) >"$docs_log" 2>&1 &
docs_pid=$!

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

wait "$docs_pid"
rc=$?
cat "$docs_log"
last=$(grep -E "^=* *[0-9]+ (passed|failed|errors?|skipped)|no tests ran" "$docs_log" \
  | tail -n 1 | sed 's/=//g; s/^ *//; s/ *$//')
summary+=("docs and browser: ${last:-no summary} (exit $rc)")
[ "$rc" -eq 0 ] || status=1
rm -f "$docs_log"

echo
echo "== summary"
for line in "${summary[@]}"; do echo "$line"; done
exit $status
