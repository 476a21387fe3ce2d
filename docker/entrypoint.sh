#!/bin/sh
# The image's entrypoint. For `voicefleet worker` it makes the worker register with its own
# container address and a unique name, so that `docker compose up --scale tts-piper=N` gives N
# distinct, dialable registry records. Values already set in the environment win.
#   VOICEFLEET_WORKER__PORT     the worker's gRPC port (required: it is part of the address)
#   WORKER_NAME_PREFIX          name prefix (default: worker); the name is PREFIX-HOSTNAME
set -eu

if [ "${1:-}" = voicefleet ] && [ "${2:-}" = worker ]; then
    if [ -z "${VOICEFLEET_WORKER__ADVERTISE_ADDRESS:-}" ]; then
        : "${VOICEFLEET_WORKER__PORT:?set VOICEFLEET_WORKER__PORT to the worker gRPC port}"
        ip="$(python -c 'import socket; print(socket.gethostbyname(socket.gethostname()))')"
        VOICEFLEET_WORKER__ADVERTISE_ADDRESS="$ip:$VOICEFLEET_WORKER__PORT"
        export VOICEFLEET_WORKER__ADVERTISE_ADDRESS
    fi
    if [ -z "${VOICEFLEET_WORKER__NAME:-}" ]; then
        VOICEFLEET_WORKER__NAME="${WORKER_NAME_PREFIX:-worker}-$(python -c 'import socket; print(socket.gethostname())')"
        export VOICEFLEET_WORKER__NAME
    fi
fi

exec "$@"
