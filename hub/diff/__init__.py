"""``mixerhub diff``: what a config change would do to recorded traffic.

Recorded checks (``mixerhub serve --record-checks`` / ``--record-kafka``) are replayed
in process through a base and a candidate config; the report counts changed verdicts by
status transition and by deciding rule, lists the most frequent changed attribute
patterns and a few examples (docs/testing-policies.md).

Modules: ``sources`` and ``kafka`` (where lines come from), ``lines`` (fast line check),
``replay`` (a config started for replay), ``memo`` (results by referenced values),
``replayer`` (the loop), ``parallel`` (worker processes for large files), ``compare``,
``report`` and ``render`` (the result), ``progress``, ``command`` (the CLI).
"""
