"""`enginehouse`: the one command. `serve` runs the gateway (which starts the workers), `worker`
runs one worker by hand (for a remote machine, or to debug an engine)."""

from __future__ import annotations

import os
import sys

USAGE = """usage: enginehouse COMMAND [OPTIONS]

commands:
  serve    run the OpenAI-compatible server and its model workers
  worker   run one model worker (python -m workers)
  bench    load-test an OpenAI-compatible server (streamed tokens/s, TTFT, TPOT)
  convert  convert a model for an engine into the model cache (python -m workers.convert)
  keys     write CurveZMQ key pairs for remote workers (enginehouse keys DIR)

enginehouse COMMAND --help shows a command's options."""


def _alias(arg: str, aliases: dict[str, str]) -> str:
    name, equals, value = arg.partition("=")
    return aliases.get(name, name) + equals + value


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command == "serve":
        sys.modules.setdefault("rich", None)  # as a worker does (workers/__main__.py): ~5 MB, ~0.1 s
        from gateway.config import Settings
        from gateway.server import serve
        from protocol.settings import parse_settings

        # --api-key K and --admin-api-key K, repeatable, as operators expect; the settings
        # themselves are lists, api_keys and admin_api_keys
        # and --models FILE for the setting models_file (ENGINEHOUSE_MODELS_FILE)
        aliases = {
            "--api-key": "--api-keys",
            "--admin-api-key": "--admin-api-keys",
            "--models": "--models-file",
        }
        rest = [_alias(arg, aliases) for arg in rest]
        serve(parse_settings(Settings, rest))
        return 0
    if command == "bench":
        from gateway.bench import main as bench

        return bench(rest)
    if command == "keys":
        from protocol.curve import main as keys

        return keys(rest)
    if command == "worker":  # another program: the gateway never imports an engine
        os.execv(sys.executable, [sys.executable, "-m", "workers", *rest])
    if command == "convert":  # the converters are the workers' code; a packaged default by its id
        from gateway.config import default_source

        rest = [default_source(arg) for arg in rest]
        os.execv(sys.executable, [sys.executable, "-m", "workers.convert", *rest])
    print(f"enginehouse: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2
