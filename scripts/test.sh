#!/usr/bin/env bash
# The test command (make test, .ci/run): unit tests, then integration tests; pytest's exit 5 ("no tests") is ok.
set -uo pipefail
VENV=${1:-.venv}
status=0
for suite in tests/unit tests/integration; do
  "$VENV/bin/python" -m pytest "$suite" -q -p no:cacheprovider
  rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 5 ]; then status=$rc; fi
done
exit $status
