#!/bin/sh
# Fail until attempt $1. The runner sets CATTLE_ATTEMPT for every program a step starts.
succeed_on=${1:-3}
if [ "${CATTLE_ATTEMPT:-1}" -lt "$succeed_on" ]; then
    echo "attempt ${CATTLE_ATTEMPT:-1}: failing on purpose (succeeds on attempt $succeed_on)" >&2
    exit 1
fi
echo "attempt ${CATTLE_ATTEMPT}: success"
