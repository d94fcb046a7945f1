"""`tracemill purge`: the purge job's code (jobs/purge.py) in this process, with the running
deployment's settings (DATABASE_URL and the object store from the cluster's published
settings, as `tracemill eval run` finds them).

    tracemill purge [--grace-s N] [--json] [--state-dir DIR]
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jobs.purge import add_arguments as add_job_arguments

    add_job_arguments(parser)
    parser.add_argument("--state-dir", help="a `tracemill up` state dir whose cluster.json names the cluster "
                                            "(default ./.tracemill)")


def run(args: argparse.Namespace) -> int:
    from cluster.remote import cluster_settings
    from jobs.purge import run as run_job

    return run_job(cluster_settings(args.state_dir), args)
