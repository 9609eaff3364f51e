"""`marlin shard PREPROCESSED_DIR OUT`: write a preprocessed dataset as WebDataset tar shards for pretraining."""
from __future__ import annotations

from . import add_no_progress


def add_arguments(p) -> None:
    from ..config import add_arguments as config_flags
    from ..data.shards import VIDEO_MODES, ShardSettings

    p.add_argument("data", help="output of `marlin preprocess` / `marlin synth` (or a .txt item list, or a YTF root)")
    p.add_argument("out", help="shard folder: shard-NNNNNN.tar files and their record shards.json")
    p.add_argument("--config", help="take --img-size / --patch-size from this pretraining config (shipped name "
                                    "or YAML)")
    add_no_progress(p, "--quiet")
    config_flags(p, ShardSettings, choices={"video": VIDEO_MODES})


def run(args) -> int:
    from .. import config as C
    from ..data.shards import ShardSettings, write_shards

    values = C.values_from_args(args)
    if args.config:
        from ..train.config import pretrain_config

        model = pretrain_config(args.config).model
        values = {"img_size": model.img_size, "patch_size": model.patch_size, **values}
    settings = C.load(ShardSettings, None, args.set, values, "marlin shard")
    record = write_shards(args.data, args.out, **C.to_dict(settings), progress=not args.no_progress)
    C.save_resolved(settings, args.out, "shard_config.yaml")
    size = sum(s["bytes"] for s in record["shards"])
    print(f"{record['samples']} samples in {len(record['shards'])} shards ({size / 1e6:.1f} MB) in {args.out}")
    return 0
