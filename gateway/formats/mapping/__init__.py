"""The declarative mapping engine: YAML mapping files (data) -> canonical documents."""

from gateway.formats.mapping.apply import MappedMessage, map_message
from gateway.formats.mapping.definition import Mapping
from gateway.formats.mapping.registry import MappingProblem, MappingSet
from gateway.formats.mapping.samples import SampleResult, run_samples, write_expected

__all__ = ["MappedMessage", "Mapping", "MappingProblem", "MappingSet", "SampleResult", "map_message",
           "run_samples", "write_expected"]
