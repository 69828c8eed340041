"""`featstore`: the command group. Each concern's commands live in their own module."""

from __future__ import annotations

import click

from featstore import __version__

from .common import FeatstoreGroup
from .datasets_cmd import datasets
from .store_cmd import gc, info, ls, repair, rm, verify


@click.group(
    cls=FeatstoreGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="featstore")
def cli() -> None:
    """featstore: extract network features once, evaluate transfer from the cache.

    \b
    Example:
      featstore datasets add flowers ../shared/data/flowers12
      featstore ls
    """


cli.add_command(datasets)
cli.add_command(ls)
cli.add_command(info)
cli.add_command(verify)
cli.add_command(repair)
cli.add_command(rm)
cli.add_command(gc)
from .copy_cmd import copy, export_cmd, import_cmd  # noqa: E402

cli.add_command(copy)
cli.add_command(export_cmd)
cli.add_command(import_cmd)
from .report_cmd import report  # noqa: E402

cli.add_command(report)
from .evaluate_cmd import evaluate  # noqa: E402

cli.add_command(evaluate)
from .sweep_cmd import sweep  # noqa: E402

cli.add_command(sweep)
from .models_cmd import models  # noqa: E402

cli.add_command(models)
from .extract_cmd import extract  # noqa: E402

cli.add_command(extract)
from .upgrade_cmd import upgrade  # noqa: E402

cli.add_command(upgrade)
from .finetune_cmd import finetune  # noqa: E402

cli.add_command(finetune)


def main() -> None:
    cli()


if __name__ == "__main__":  # python -m featstore.cli.main
    main()
