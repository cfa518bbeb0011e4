#!/bin/sh
# Install what the benchmarks need when it is missing: a C compiler and libgearman's headers
# (for the C worker the throughput benchmark compiles), PHP with the pecl gearman extension
# (the runtime GearmanManager uses), gearmand and the C tools, and matplotlib + py-spy in the venv.
# Idempotent: safe to run before every benchmark run.
set -eu
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export PATH="$PATH:/usr/sbin:/sbin"

missing=""
command -v gcc >/dev/null 2>&1 || missing="$missing gcc"
[ -f /usr/include/libgearman/gearman.h ] || [ -f /usr/include/libgearman-1.0/gearman.h ] || missing="$missing libgearman-dev"
command -v php >/dev/null 2>&1 || missing="$missing php-cli"
if ! command -v php >/dev/null 2>&1 || ! php -r 'exit(class_exists("GearmanWorker") ? 0 : 1);' 2>/dev/null; then
    missing="$missing php-gearman"
fi
command -v gearmand >/dev/null 2>&1 || missing="$missing gearman-job-server"
command -v gearman >/dev/null 2>&1 || missing="$missing gearman-tools"
if [ -n "$missing" ]; then
    echo "bench/setup.sh: apt-get install$missing"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

if [ ! -x "$VENV/bin/python" ]; then
    make venv
fi
"$VENV/bin/python" -c 'import matplotlib' 2>/dev/null || "$VENV/bin/python" -m pip install -q matplotlib
command -v "$VENV/bin/py-spy" >/dev/null 2>&1 || "$VENV/bin/python" -m pip install -q py-spy || true
echo "bench/setup.sh: ready"
