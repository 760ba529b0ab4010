#!/bin/sh
# The stand-in's entrypoint: what the official image's docker/prod_entrypoint.sh
# does without a tracer or a separate health app (see official.yml), that is,
# run litellm with the container's command as its arguments, as PID 1.
exec litellm "$@"
