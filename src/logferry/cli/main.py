"""The ``logferry`` command: a thin layer of subcommands over the library."""

from __future__ import annotations

import atexit
import gc
import importlib
import os

import click

from logferry import __version__
from logferry.cli.logs import add_output_options

#: Each subcommand and the module that defines it. A command's module is imported when the
#: command runs (or help lists it), so ``logferry ship`` does not load the stats server,
#: CloudWatch, packaging and the rest: start-up time and memory are the user's too.
_COMMANDS: dict[str, tuple[str, str]] = {
    "cloudwatch": ("logferry.cli.cloudwatch", "cloudwatch"),
    "top": ("logferry.cli.top", "top"),
    "ship": ("logferry.cli.ship", "ship"),
    "enqueue": ("logferry.cli.enqueue", "enqueue"),
    "worker": ("logferry.cli.worker", "worker"),
    "run": ("logferry.cli.run", "run"),
    "validate": ("logferry.cli.run", "validate"),
    "job": ("logferry.cli.job", "job"),
    "package": ("logferry.cli.package", "package"),
    "pull": ("logferry.cli.pull", "pull"),
    "purge": ("logferry.cli.purge", "purge"),
    "status": ("logferry.cli.status", "status"),
    "errors": ("logferry.cli.errors", "errors"),
    "drain": ("logferry.cli.errors", "drain"),
    "ledger": ("logferry.cli.ledger", "ledger"),
    "demo": ("logferry.cli.demo", "demo"),
    "deploy": ("logferry.cli.deploy", "deploy"),
    "generate": ("logferry.cli.generate", "generate_group"),
    "serve": ("logferry.cli.serve", "serve"),
    "stats": ("logferry.cli.serve", "stats"),
}


class _LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (see ``_COMMANDS``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in _COMMANDS:
            module, attr = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attr)
            _started()
            assert isinstance(command, click.Command)
            add_output_options(command)
            self.add_command(command, cmd_name)
        return command


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="logferry")
def cli() -> None:
    """Ferry logs from buckets to where people read them: every line once, nothing lost."""


add_output_options(cli)


def _tune_malloc() -> None:
    # glibc gives each thread its own malloc arena; with a decode, a prepare and a send
    # thread per worker, freed batch memory scatters over many arenas and RSS climbs.
    # Two arenas keep the peak bounded at no measurable cost in speed. glibc also raises
    # its mmap threshold each time a large block is freed, after which the MB-sized
    # buffers of the hot path (decompressed pieces, request bodies) come from the heap
    # and its peak stays resident: a fixed 1 MiB threshold returns them to the system
    # when freed (S3 → Mezmo, 100 MB object: peak RSS ~150 → ~128 MB, ~0.1 s more
    # system time).
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        if not os.environ.get("MALLOC_ARENA_MAX"):
            libc.mallopt(-8, 2)  # M_ARENA_MAX
        if not os.environ.get("MALLOC_MMAP_THRESHOLD_"):
            libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


_collecting_after_start = False


def _started() -> None:
    """The command's modules are imported: collect garbage from here on (see ``main``)."""
    global _collecting_after_start
    if _collecting_after_start:
        _collecting_after_start = False
        # What start-up built (modules, classes, pydantic schemas) lives as long as the
        # process: frozen, later collections need not walk it again and again.
        gc.freeze()
        gc.enable()


def _freeze_at_exit() -> None:
    # The interpreter's last collections walk every object still alive (botocore's service
    # models, pydantic's schemas, every module): 50-100 ms of a short ``ship``, after its
    # work is done. Frozen objects are left to the process's end, which frees them all.
    gc.freeze()


def main() -> None:
    """Console-script entry point."""
    global _collecting_after_start
    _tune_malloc()
    # Freezing frees nothing and stops nothing: exit handlers that run after it still work.
    atexit.register(_freeze_at_exit)
    # Start-up allocates ~70,000 long-lived objects (modules, classes, schemas); collecting
    # while they pile up finds a few hundred garbage objects and costs ~20 ms; ``_started``
    # turns it back on once the command is imported.
    if gc.isenabled():
        gc.disable()
        _collecting_after_start = True
    cli(prog_name="logferry")
