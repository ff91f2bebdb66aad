"""Reading a command's settings (flags over environment) for the gateway and the workers alike:
an invalid value ends the command with one line per problem and exit status 2, as argparse
does, instead of a traceback."""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, CliApp

S = TypeVar("S", bound=BaseSettings)


def parse_settings(model: type[S], args: list[str]) -> S:
    try:
        return CliApp.run(model, cli_args=args)
    except ValidationError as exc:
        prog = model.model_config.get("cli_prog_name") or "enginehouse"
        for error in exc.errors(include_url=False):
            name = ".".join(str(part) for part in error["loc"]).replace("_", "-")
            given = f" (given {error['input']!r})" if "input" in error and error["type"] != "missing" else ""
            print(f"{prog}: --{name}: {error['msg']}{given}", file=sys.stderr)
        raise SystemExit(2) from None
