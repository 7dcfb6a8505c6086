"""`mergemix export-mergekit`: the chosen merge of a pipeline run as a mergekit YAML."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from mergemix_jax.cli.errors import UsageError

EXAMPLES = """Examples:
  mergemix export-mergekit runs/demo-1a2b3c4d --out merge.yaml
  mergemix export-mergekit runs/demo-1a2b3c4d --mixture runs/demo-1a2b3c4d/search/cmaes.json --models-dir hf --out merge.yaml
The YAML names Hugging Face folders (<models-dir>/base, <models-dir>/<domain>); the command prints the
`mergemix export-hf` lines that write them. Then: mergekit-yaml merge.yaml merged-model/
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-mergekit", help="write the chosen merge as a mergekit YAML", description=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="pipeline run folder (config.yaml, mixture.json, base/, experts/)")
    parser.add_argument("--out", required=True, help="mergekit YAML to write")
    parser.add_argument("--mixture", default="", help="mixture file to export (default: <run>/mixture.json)")
    parser.add_argument("--models-dir", default="", help="where the HF folders of the base and experts are (default: <run>/hf)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--min-weight", type=float, default=0.0, help="leave out experts at or below this weight")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mergemix_jax.config import load_config
    from mergemix_jax.export import read_mixture
    from mergemix_jax.export.mergekit import mergekit_config, write_mergekit_yaml
    from mergemix_jax.runkit import training

    run_dir = Path(args.run)
    config_file, mixture_file = run_dir / "config.yaml", Path(args.mixture or run_dir / "mixture.json")
    if not config_file.is_file():
        raise UsageError(f"{config_file} does not exist; RUN must be a finished `mergemix run` folder")
    if not mixture_file.is_file():
        option = "--mixture" if args.mixture else f"RUN ({run_dir} has no mixture.json)"
        raise UsageError(f"{mixture_file} does not exist (from {option}); give a finished `mergemix run` folder or --mixture FILE")
    config = load_config(config_file)
    try:
        mixture = read_mixture(mixture_file)
    except ValueError as err:
        raise UsageError(
            f"--mixture {mixture_file} is not a mixture file: {err}; give the mixture JSON of `mergemix run` "
            "(RUN/mixture.json, RUN/search/<method>.json) or of `mergemix search --out`"
        ) from None
    models_dir = Path(args.models_dir or run_dir / "hf")
    experts = {p.name: p for p in training.expert_dirs(config, run_dir)}
    sources = {"base": training.base_dir(config, run_dir), **experts}
    merge = mergekit_config(
        mixture.weights, str(models_dir / "base"), {name: str(models_dir / name) for name in experts}, config.eval, args.dtype, args.min_weight
    )
    used = {"base", *(Path(m["model"]).name for m in merge["models"])}
    commands = [shlex.join(["mergemix", "export-hf", str(src), "--out", str(models_dir / name), "--dtype", args.dtype]) for name, src in sources.items() if name in used]
    comment = f"mergemix {mixture.method} mixture of {mixture_file}, eval.merge={config.eval.merge}\nwrite the model folders first:\n" + "\n".join(commands)
    print(f"wrote {write_mergekit_yaml(merge, args.out, comment)}")
    missing = [c for c, name in zip(commands, (n for n in sources if n in used), strict=True) if not (models_dir / name / "config.json").is_file()]
    if missing:
        print("export the model folders the YAML names first:\n  " + "\n  ".join(missing))
    return 0
