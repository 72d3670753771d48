"""The ``logferry`` command: a thin layer of subcommands over the library."""

from __future__ import annotations

import os

import click

from logferry import __version__
from logferry.cli.cloudwatch import cloudwatch
from logferry.cli.demo import demo
from logferry.cli.deploy import deploy
from logferry.cli.enqueue import enqueue
from logferry.cli.errors import drain, errors
from logferry.cli.generate import generate_group
from logferry.cli.job import job
from logferry.cli.ledger import ledger
from logferry.cli.logs import add_output_options
from logferry.cli.package import package
from logferry.cli.pull import pull
from logferry.cli.purge import purge
from logferry.cli.run import run, validate
from logferry.cli.serve import serve, stats
from logferry.cli.ship import ship
from logferry.cli.status import status
from logferry.cli.top import top
from logferry.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="logferry")
def cli() -> None:
    """Ferry logs from buckets to where people read them: every line once, nothing lost."""


for command in (
    cloudwatch,
    top,
    ship,
    enqueue,
    run,
    validate,
    job,
    package,
    pull,
    purge,
    status,
    errors,
    drain,
    ledger,
    demo,
    deploy,
    generate_group,
    serve,
    stats,
    worker,
):
    cli.add_command(command)
add_output_options(cli)


def _limit_malloc_arenas() -> None:
    # glibc gives each thread its own malloc arena; with a decode, a prepare and a send
    # thread per worker, freed batch memory scatters over many arenas and RSS climbs.
    # Two arenas keep the peak bounded at no measurable cost in speed.
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def main() -> None:
    """Console-script entry point."""
    _limit_malloc_arenas()
    cli(prog_name="logferry")
