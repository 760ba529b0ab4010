"""The gateway's code inside the LiteLLM proxy, one module per concern.

The role mounts this folder read-only in the proxy's container and puts its
parent on ``PYTHONPATH``, so LiteLLM imports it by name (its callback loader
falls back to ``importlib.import_module`` when no file of that name sits next
to the config). The config names only :mod:`gateway.litellm_entry`, which
makes the objects LiteLLM asks for on first access; see the names there.

* :mod:`gateway.tasks`: the task-id grammar (``task:<id>`` tags, subtasks).
* :mod:`gateway.auth`: who may use the gateway (``custom_auth``).
* :mod:`gateway.ratelimit`: the applications' requests-per-minute windows.
* :mod:`gateway.cooldown`: cooling down deployments whose host is unreachable.
* :mod:`gateway.events`: LiteLLM's callback arguments -> cost ledger rows.
* :mod:`gateway.budgets`: task budgets and the spend they are checked against.
* :mod:`gateway.spool`: the ledger's rows on disk until Postgres has them.
* :mod:`gateway.store`: the ledger's tables in Postgres.
* :mod:`gateway.metrics`: the ledger's Prometheus counters.
* :mod:`gateway.ledger`: the cost ledger, the callback that ties these together.
* :mod:`gateway.api`: the ledger's HTTP API under ``/gateway/ledger``.
* :mod:`gateway.litellm_entry`: the one module LiteLLM's config names.

Importing any of them creates nothing and starts no thread.
"""
