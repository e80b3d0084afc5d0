"""Command line for the training step; one flag per parameter of every model family (``families.catalogue``).

Exit codes: 0 success, 1 the run failed (FAILED in MLflow, no registry version), 2 bad arguments.
The result JSON goes to ``--output-json`` and, when the folder exists (KubernetesPodOperator), to
``<SENTIFLOW_TRAIN_XCOM_DIR>/return.json``. With ``gpus > 1`` outside torchrun the command runs itself again
under torchrun (``sentiflow.train.distributed``) and returns torchrun's exit code; under torchrun only rank 0
prints and writes the result.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sentiflow.families.catalogue import families, family
from sentiflow.names import FAMILY_TRANSFORMER
from sentiflow.settings.components import TrainingSettings
from sentiflow.train import TrainingError
from sentiflow.train.distributed import (
    device_shortfall,
    entrypoint_command,
    rank,
    terminate_as_exception,
    under_torchrun,
    world_size,
)

XCOM_FILE = "return.json"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentiflow-train",
        description="Train on a clean snapshot, log one MLflow run and register a model version.",
    )
    parser.add_argument("--manifest-uri", required=True, help="s3://…/manifest.json of a clean snapshot")
    parser.add_argument(
        "--family",
        choices=sorted(families()),
        default=FAMILY_TRANSFORMER,
        help="the model family to train (default: transformer fine-tuning)",
    )
    parser.add_argument("--params-json", default=None, help="parameters as one JSON object (flags win)")
    parser.add_argument("--output-json", type=Path, default=None, help="also write the result JSON here")
    parser.add_argument("--registered-model-name", default=None, help="default: SENTIFLOW_MLFLOW_*")
    parser.add_argument("--no-register", action="store_true", help="log the run but create no version")
    seen: set[str] = set()
    for entry in families().values():
        for name, info in entry.params.model_fields.items():
            if name in seen:
                continue
            seen.add(name)
            parser.add_argument(_flag(name), dest=f"param_{name}", default=None, help=info.description)
    return parser


def write_result(result: dict[str, Any], output_json: Path | None) -> list[Path]:
    text = json.dumps(result, indent=2, sort_keys=True)
    targets = [output_json] if output_json else []
    xcom_dir = Path(TrainingSettings().xcom_dir)
    if xcom_dir.is_dir():
        targets.append(xcom_dir / XCOM_FILE)
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return targets


def _under_torchrun(parser: argparse.ArgumentParser, gpus: int, device: str, argv: list[str] | None) -> int:
    """Run this same command again under torchrun, one process per GPU; torchrun's exit code."""
    shortfall = device_shortfall(gpus, device)
    if shortfall:
        parser.error(shortfall)
    command = [*entrypoint_command(gpus, python=sys.executable), *(sys.argv[1:] if argv is None else argv)]
    logging.getLogger(__name__).info("gpus=%d: running under torchrun: %s", gpus, " ".join(command))
    return subprocess.call(command)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    entry = family(args.family)
    # The one parse: --params-json, then the flags given (pydantic converts their strings)
    flags = {
        key.removeprefix("param_"): None if value.lower() in ("none", "null") else value
        for key, value in vars(args).items()
        if key.startswith("param_") and value is not None
    }
    try:
        params = entry.params.model_validate({**json.loads(args.params_json or "{}"), **flags})
    except (ValueError, TypeError, ValidationError) as exc:  # json errors are ValueErrors too
        parser.error(f"invalid parameters for {args.family}: {exc}")
    gpus = int(getattr(params, "gpus", 1))  # a family without the parameter trains in one process
    if gpus > 1 and not under_torchrun():
        return _under_torchrun(parser, gpus, str(getattr(params, "device", "auto")), argv)
    if under_torchrun():
        terminate_as_exception()
        if gpus != world_size():
            logging.getLogger(__name__).warning(
                "gpus=%d but torchrun started %d processes: %d train", gpus, world_size(), world_size()
            )
    try:
        result = entry.train(
            args.manifest_uri,
            params,
            register_model=not args.no_register,
            registered_model_name=args.registered_model_name,
        )
    except TrainingError as exc:
        print(f"training failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # storage, MLflow: still one line that says what broke, and a non-zero exit
        print(f"training failed: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        logging.getLogger(__name__).debug("traceback", exc_info=True)
        return 1
    if result is None:  # a rank above 0: rank 0 reports the run
        logging.getLogger(__name__).info("rank %d of %d done", rank(), world_size())
        return 0
    payload = result.model_dump()
    print(f"mlflow run id: {result.run_id}")
    print(f"registered model version: {result.model_version}  ({result.model_uri})")
    for target in write_result(payload, args.output_json):
        print(f"result written to {target}")
    return 0
