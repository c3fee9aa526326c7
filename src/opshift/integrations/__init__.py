"""Zero-code job monitoring: one module per framework, each translating its own hooks.

    from opshift.integrations import celery as opshift_celery
    opshift_celery.instrument(app, outbox, monitors={"nightly-report": "nightly-report"})

A framework module imports its framework only when it is itself imported: ``import
opshift.integrations`` imports none. The modules, from the bottom up:

- ``_timer``: the ``Timer`` protocol and ``ThreadTimer`` (one daemon thread per process);
- ``_match``: ``monitors`` (name or glob -> token, or a callable) and shared-token warnings;
- ``_core``: ``Reporter``, the one place that decides what a finished run sends and when
  (its docstring numbers the rules: one count per run, the shapes, ``up`` spacing, never
  breaking the job, fork);
- ``celery``: Celery's signals translated into the core's calls; ``apscheduler``: one
  scheduler listener; ``rq``: a worker's exception handler, job class and work-horse-killed
  hook; ``django``: ``MonitoredCommand``, a management command reporting its own runs;
- ``_plan``: the longest gap between a beat entry's (or an APScheduler job's) runs, for
  ``opshift plan``.

A new framework is one module: resolve a run to a token with a ``Matcher``, and call a
``Reporter``'s ``succeeded`` (or ``succeeded_later``, with a maker of the run, for runs by
the thousand)/``failed``/``overrunning`` once per run, when its final attempt ends.
"""

__all__: list[str] = []
