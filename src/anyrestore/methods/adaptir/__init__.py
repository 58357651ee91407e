"""AdaptIR (Guo et al., NeurIPS 2024) and the PETL baselines as a training method.

Importing this package registers the ``adapter`` objective with the training engine, so recipes can say
``method: {name: adapter, options: {method: adaptir}}`` (packaged: ``adaptir_*`` and ``petl_*``). The
adapters themselves live in :mod:`anyrestore.adapters`; loading a base model plus an adapter file for
inference is :mod:`anyrestore.inference.adapters`.
"""

from anyrestore.methods.adaptir.objective import (
    ADAPTER_FILE,
    OBJECTIVE_NAME,
    AdapterObjective,
    adapter_objective,
)
from anyrestore.train.objective import OBJECTIVES, register_objective

if OBJECTIVE_NAME not in OBJECTIVES:
    register_objective(OBJECTIVE_NAME, adapter_objective)

__all__ = ["ADAPTER_FILE", "OBJECTIVE_NAME", "AdapterObjective", "adapter_objective"]
