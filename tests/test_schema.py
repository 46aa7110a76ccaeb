"""Every GraphQL document the SDK sends validates against the schema copies in tests/data/runpod-schema."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

import graphql
import pytest

import runpod_hybrid
from runpod_hybrid.controlplane import documents as gql
from runpod_hybrid.controlplane.graphql import operation_of

from runpod_standin import MERGED_SCHEMA, merged_schema, third_party_schema

# Fields RunPod's docs output and the introspected merged schema have, but the older third-party SDL lacks.
THIRD_PARTY_SDL_GAPS = {"GPU_TYPES": {"maxUnreservedGpuCount", "availableGpuCounts"}}


def sdk_documents() -> dict[str, str]:
    """Every module-level string constant in runpod_hybrid that is a named GraphQL operation."""
    found: dict[str, str] = {}
    for info in pkgutil.walk_packages(runpod_hybrid.__path__, "runpod_hybrid."):
        if info.name.startswith("runpod_hybrid.cli") or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                name.isupper()
                and isinstance(value, str)
                and value.lstrip().startswith(("query ", "mutation "))
            ):
                found[f"{info.name.rsplit('.', 1)[-1]}.{name}"] = value
    return found


DOCUMENTS = sdk_documents()


def test_documents_were_found() -> None:
    assert "documents.CREATE_ON_DEMAND_POD" in DOCUMENTS
    assert len(DOCUMENTS) >= 10


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_document_validates_against_merged_schema(name: str) -> None:
    errors = graphql.validate(merged_schema(), graphql.parse(DOCUMENTS[name]))
    assert errors == [], [e.message for e in errors]


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_argument_value_is_a_variable(name: str) -> None:
    """No value is ever pasted into query text: arguments take `$variables` only."""
    literals: list[str] = []

    class Visitor(graphql.Visitor):
        def enter_argument(self, node: graphql.ArgumentNode, *_args: object) -> None:
            if not isinstance(node.value, graphql.VariableNode):
                literals.append(node.name.value)

    graphql.visit(graphql.parse(DOCUMENTS[name]), Visitor())
    assert literals == []


@pytest.mark.parametrize("name", sorted(gql.POD_AND_GPU_DOCUMENTS))
def test_pod_and_gpu_documents_validate_against_third_party_sdl(name: str) -> None:
    errors = graphql.validate(third_party_schema(), graphql.parse(gql.POD_AND_GPU_DOCUMENTS[name]))
    unexplained = [
        e.message
        for e in errors
        if not any(f"'{f}'" in e.message for f in THIRD_PARTY_SDL_GAPS.get(name, ()))
    ]
    assert unexplained == []
    # The known gaps are real (each named field is what fails), so this list cannot go stale silently.
    for field in THIRD_PARTY_SDL_GAPS.get(name, ()):
        assert any(f"'{field}'" in e.message for e in errors)


# The fields no reference client selects (runpod-python, runpodctl, SkyPilot): RunPod may drop them.
EXTRA_FIELDS = {
    "Pod": ("adjustedCostPerHr", "networkVolumeId", "latestTelemetry"),
    "PodMachineInfo": ("gpuTypeId", "dataCenterId", "secureCloud", "supportPublicIp"),
    "User": ("currentSpendPerHr",),
}
EXTRAS_DOCUMENTS = ("LIST_POD_EXTRAS", "GET_POD_EXTRAS", "POD_TELEMETRY")


@cache
def schema_without_extras() -> graphql.GraphQLSchema:
    """The merged schema as it would be if RunPod dropped every extra field."""
    schema = graphql.build_schema(MERGED_SCHEMA.read_text())
    for type_name, names in EXTRA_FIELDS.items():
        fields = schema.type_map[type_name].fields  # type: ignore[union-attr]
        for name in names:
            del fields[name]
    return schema


@pytest.mark.parametrize("name", sorted(n for n in gql.POD_AND_GPU_DOCUMENTS if n not in EXTRAS_DOCUMENTS))
def test_core_documents_survive_the_loss_of_every_extra_field(name: str) -> None:
    errors = graphql.validate(schema_without_extras(), graphql.parse(gql.POD_AND_GPU_DOCUMENTS[name]))
    assert errors == [], [e.message for e in errors]


@pytest.mark.parametrize("name", EXTRAS_DOCUMENTS)
def test_the_extras_documents_are_what_such_a_loss_breaks(name: str) -> None:
    """They do select the extras (so the check above means something), and each one degrades on its own."""
    errors = graphql.validate(schema_without_extras(), graphql.parse(gql.POD_AND_GPU_DOCUMENTS[name]))
    assert errors
    _, operation = operation_of(gql.POD_AND_GPU_DOCUMENTS[name])
    assert operation in gql.EXTRAS_LOST
