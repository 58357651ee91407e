"""Which layers matter: MAC (RAM's mask attribute conductance), integrated gradients, random rankings,
ranking files and plots, and freeze plans that fine-tune only the top-ranked units.

Units are the modules that directly own parameters, named as in the bare model (see :mod:`.units`).
"""

from anyrestore.attribution.conductance import Attribution, conductance, conductance_reference, edge_energy
from anyrestore.attribution.data import DataSource, Sample, load_attribution_images, parse_data_spec
from anyrestore.attribution.freeze import FreezePlan, freeze_plan
from anyrestore.attribution.integrated_gradients import integrated_gradients, integrated_gradients_reference
from anyrestore.attribution.mac import MaskAttributePath, mac, mac_reference
from anyrestore.attribution.ranking import Ranking, plot_ranking, random_ranking, read_ranking, write_ranking
from anyrestore.attribution.units import (
    AttributionError,
    attribution_units,
    owner_name,
    to_model_space,
    unit_modules,
    unit_range_wrapper,
)

__all__ = [
    "Attribution",
    "AttributionError",
    "DataSource",
    "FreezePlan",
    "MaskAttributePath",
    "Ranking",
    "Sample",
    "attribution_units",
    "conductance",
    "conductance_reference",
    "edge_energy",
    "freeze_plan",
    "integrated_gradients",
    "integrated_gradients_reference",
    "load_attribution_images",
    "mac",
    "mac_reference",
    "owner_name",
    "parse_data_spec",
    "plot_ranking",
    "random_ranking",
    "read_ranking",
    "to_model_space",
    "unit_modules",
    "unit_range_wrapper",
    "write_ranking",
]
