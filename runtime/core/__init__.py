"""The kernel: the runtime (a root nursery of job actors) and the job actor.

Layers, each importing only those before it (and :mod:`runtime.store`, :mod:`runtime.flow`,
:mod:`actors`; never the CLI, the cluster or the test helpers)::

    states, events        job states, results and errors; events and the per-job hub
    recording             how a job records: a strategy per mode (off, memory, durable)
    services              the one narrow interface a job gets from its runtime
    resources             what a job's nursery holds (process groups, streams, adapters)
    context, executors    what a step sees (``ctx``); how python, command and agent steps run
    job                   the job actor: one nursery, one state machine, one exit
    handle                the user's handle to a job
    runtime               spawn, find and count jobs; open_runtime
"""
