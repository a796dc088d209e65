"""Options several commands share."""

from __future__ import annotations

from typing import Annotated

import typer

NO_WAIT = Annotated[
    bool,
    typer.Option(
        "--no-wait",
        help="Publish and return: do not wait for the services to accept or refuse it.",
    ),
]
