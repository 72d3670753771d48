"""``logferry purge``: delete every object under a source."""

from __future__ import annotations

import click

from logferry import api
from logferry.cli.common import err, handle_errors, safe_text
from logferry.cli.ship import source_options
from logferry.sources import open_source


@click.command()
@click.argument("source")
@click.option("--yes", is_flag=True, help="Really delete (required).")
@click.option("--dry-run", is_flag=True, help="Only count and list what would be deleted.")
@source_options
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"deleted": n} or {"would_delete": n}.'
)
@handle_errors
def purge(
    source: str,
    yes: bool,
    dry_run: bool,
    endpoint_url: str | None,
    no_verify_tls: bool,
    profile: str | None,
    region: str | None,
    as_json: bool,
) -> None:
    """Delete every object under SOURCE. Refuses without --yes."""
    if not yes and not dry_run:
        raise click.UsageError(
            "purge deletes every object under SOURCE: add --yes (or --dry-run to look first)"
        )
    src = open_source(
        source, endpoint_url=endpoint_url, verify=not no_verify_tls, profile=profile, region=region
    )
    try:
        total = 0
        for page in src.list_pages():
            keys = [o.key for o in page]
            if dry_run:
                for k in keys:
                    click.echo(safe_text(k, markup=False))
                total += len(keys)
            else:
                total += src.delete(keys)
    finally:
        src.close()
    if as_json:
        click.echo(api.to_json_line({"would_delete" if dry_run else "deleted": total}))
    elif dry_run:
        err.print(f"would delete {total} objects under {safe_text(src.display)}")
    else:
        err.print(f"deleted {total} objects under {safe_text(src.display)}")
