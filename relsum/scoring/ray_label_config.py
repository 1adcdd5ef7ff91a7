"""The Ray labelling stage's config (:class:`RayLabelConfig`), without pandas, Ray or torch.

Kept apart from :mod:`relsum.scoring.ray_label` so that ``relsum label-ray --help`` and argument errors
load none of them.
"""

from __future__ import annotations

import dataclasses

from relsum.core.config import cfg
from relsum.scoring.scorer_config import ScorerConfig


@dataclasses.dataclass
class RayLabelConfig:
    input: str = cfg("", help="a Parquet file or a folder of *.parquet parts with query, "
                              "title, text[, label]")
    out_dir: str = cfg("relsum_home/labelled", help="output folder: one labelled part per input part")
    reward_model: str = cfg("", help="local cross-encoder folder (the one scorer)")
    scorer: ScorerConfig = cfg(default_factory=ScorerConfig, help="scorer config used by every actor")
    address: str | None = cfg(None, help="Ray cluster address (e.g. ray://head:10001 or "
                                         "auto); None = local Ray")
    local_num_cpus: int | None = cfg(None, help="CPUs of the local Ray runtime; None = all")
    num_actors: int = cfg(2, help="scorer actors (each loads the model once)")
    cpus_per_actor: float = cfg(1.0, help="CPUs reserved per actor; also its torch threads (rounded up)")
    batch_size: int = cfg(256, help="rows per map_batches call")

    def __post_init__(self):
        if self.num_actors < 1 or self.batch_size < 1 or self.cpus_per_actor <= 0:
            raise ValueError("num_actors and batch_size must be >= 1 and cpus_per_actor > 0")
        if (self.local_num_cpus is not None
                and self.num_actors * self.cpus_per_actor > self.local_num_cpus - 0.5):
            raise ValueError(f"{self.num_actors} actors x {self.cpus_per_actor} CPUs leave "
                             f"no CPU of the local "
                             f"Ray's {self.local_num_cpus} for reading Parquet (the run would stall); "
                             "lower num_actors or cpus_per_actor")
