"""The methods' papers' headline claims as runnable checks (``asyncfl-bench claims``).

A claim is data (``catalog/<id>.toml``, read by ``spec``): the paper and where it says
it, the statement and the paper's figure, the arms it compares, the metric and, per
scale (``ci``, ``small``, ``paper``), the setting it runs in. ``plan`` turns a claim
and a scale into ordinary run configs (so its runs live in the normal results store,
are reused, and resume); ``measure`` reads one number per run; ``verdict`` decides,
from the runs paired by seed, whether the claim holds at that scale.
"""
