"""`tracemill retention run [--dry-run]`: the retention job's code (jobs/retention.py) in this
process, with the running deployment's settings (as `tracemill purge` finds them).

    tracemill retention run [--dry-run] [--json] [--state-dir DIR]
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jobs.retention import add_arguments as add_job_arguments

    commands = parser.add_subparsers(dest="retention_command", required=True)
    run_parser = commands.add_parser("run", help="remove what is past its retention period now")
    add_job_arguments(run_parser)
    run_parser.add_argument("--state-dir", help="a `tracemill up` state dir whose cluster.json names the cluster "
                                                "(default ./.tracemill)")


def run(args: argparse.Namespace) -> int:
    from cluster.remote import cluster_settings
    from jobs.retention import run as run_job

    return run_job(cluster_settings(args.state_dir), args)
