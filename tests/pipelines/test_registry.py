"""Every registered pipeline implements the declared interface; unknown names get a suggestion."""
import dataclasses

import pytest

from mambatune.pipelines import registry
from mambatune.pipelines.recipe import RecipeError, from_dict


@pytest.mark.parametrize("name", list(registry.PIPELINES))
def test_each_pipeline_implements_the_interface(name):
    module = registry.get(name)
    assert isinstance(module, registry.Pipeline)
    assert dataclasses.is_dataclass(module.DataConfig)
    if registry.entry(name).ensemble:
        assert callable(registry.ensemble_module(name).combine_runs)


def test_table_pipelines_share_the_data_keys():
    from mambatune.pipelines.data_source import DataSource
    assert issubclass(registry.get("sequence_classification").DataConfig, DataSource)


def test_unknown_pipeline_names_the_closest():
    with pytest.raises(RecipeError, match="unknown pipeline 'genomic'; did you mean 'genomics'"):
        from_dict({"pipeline": "genomic"})
    with pytest.raises(registry.PipelineError, match="have no ensemble"):
        registry.ensemble_module("sequence_classification")
