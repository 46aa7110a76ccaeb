"""A small stand-in of RunPod's GraphQL API, for tests and for recording cassettes.

RunPod cannot be reached from here, so tests talk to this real HTTP server on 127.0.0.1. It is strict where
RunPod is: every document must validate against ``data/runpod-schema/runpod-merged-validation.graphql``
(otherwise HTTP 400 ``GRAPHQL_VALIDATION_FAILED``, as RunPod answers), the key must arrive as a Bearer
header, and answers are executed by graphql-core against a state shaped like ``data/runpod-samples/``
(env as ``KEY=value`` strings, ``runtime`` null until the container starts, ``lowestPrice`` fields null for
cards out of stock). Faults (capacity shapes, 5xx pages, 429, dropped connections, hangs) are injected per
operation name, first in first out; each may come after the operation was carried out (the pod was made, the
answer is lost), as RunPod's do.

Where RunPod is wrong, so is the stand-in: it accepts ``terminateAfter`` (an RFC 3339 ``DateTime``, the only
form RunPod's scalar takes) and never acts on it. Its pod list can lag behind a create (``list_lag``), and a
pod-scoped key (``add_pod_key``, what RunPod puts in a pod's ``RUNPOD_API_KEY``) may read and stop its own pod,
nothing else.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import graphql

DATA = Path(__file__).parent / "data"
MERGED_SCHEMA = DATA / "runpod-schema" / "runpod-merged-validation.graphql"
THIRD_PARTY_SCHEMA = DATA / "runpod-schema" / "runpod.schema.graphql"

CAPACITY_MESSAGE = "There are no longer any instances available with the requested specifications. Please refresh and try again."
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
# The root fields a pod-scoped key may use, on its own pod only.
POD_KEY_FIELDS = frozenset({"pod", "podStop"})


@cache
def merged_schema() -> graphql.GraphQLSchema:
    return graphql.build_schema(MERGED_SCHEMA.read_text())


@cache
def third_party_schema() -> graphql.GraphQLSchema:
    return graphql.build_schema(THIRD_PARTY_SCHEMA.read_text())


@dataclass
class Fault:
    """One injected answer. ``kind``: graphql_errors, null_data, http, truncated, drop_after_apply,
    apply_then_hang, hang. ``after_apply``: the operation is carried out first, then this answer is sent."""

    kind: str
    status: int = 200
    body: str = ""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    after_apply: bool = False

    def applied(self) -> Fault:
        """The same answer, sent after the operation was carried out."""
        return replace(self, after_apply=True)

    @classmethod
    def capacity_message(cls, message: str = CAPACITY_MESSAGE) -> Fault:
        return cls("graphql_errors", errors=[{"message": message}])

    @classmethod
    def supply_constraint(cls, path: str = "podFindAndDeployOnDemand") -> Fault:
        # The captured body (runpod-samples/graphql-error-supply-constraint...): message, path and code.
        return cls(
            "graphql_errors",
            errors=[
                {
                    "message": CAPACITY_MESSAGE,
                    "path": [path],
                    "extensions": {"code": "SUPPLY_CONSTRAINT", "userId": "u-123"},
                }
            ],
        )

    @classmethod
    def null_data(cls) -> Fault:
        return cls("null_data")

    @classmethod
    def graphql_error(cls, message: str, code: str | None = None) -> Fault:
        return cls(
            "graphql_errors",
            errors=[{"message": message, **({"extensions": {"code": code}} if code else {})}],
        )

    @classmethod
    def truncated(cls) -> Fault:
        """Carry the operation out, then send only the first half of its JSON answer (status 200)."""
        return cls("truncated", after_apply=True)

    @classmethod
    def http(cls, status: int, body: str, content_type: str = "text/html", **headers: str) -> Fault:
        return cls("http", status=status, body=body, content_type=content_type, headers=headers)

    @classmethod
    def drop_after_apply(cls) -> Fault:
        """Apply the operation, then close the connection without answering (an ambiguous failure)."""
        return cls("drop_after_apply")

    @classmethod
    def apply_then_hang(cls) -> Fault:
        """Apply the operation, then never answer: the client times out though the pod was made."""
        return cls("apply_then_hang")

    @classmethod
    def hang(cls) -> Fault:
        """Never answer (until the server stops): the client's read timeout fires."""
        return cls("hang")


GATEWAY_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    "<hr><center>cloudflare</center></body></html>"
)


def _gpu(
    gpu_id: str,
    display: str,
    memory_gb: int,
    secure: float | None,
    community: float | None,
    spot: float | None,
    stock: str | None,
    max_count: int = 8,
) -> dict[str, Any]:
    return {
        "id": gpu_id,
        "displayName": display,
        "memoryInGb": memory_gb,
        "maxGpuCount": max_count,
        "secureCloud": secure is not None,
        "communityCloud": community is not None,
        "securePrice": secure,
        "communityPrice": community,
        "secureSpotPrice": spot,
        "communitySpotPrice": spot * 0.8 if spot else None,
        "stock": {
            "SECURE": stock if secure is not None else None,
            "COMMUNITY": stock if community is not None else None,
        },
    }


def default_gpu_types() -> list[dict[str, Any]]:
    # Ids, names and memory from runpod-samples (recorded 2026-08-20 and docs); prices from the same samples
    # where they exist, otherwise of the same order as RunPod's list prices.
    return [
        _gpu("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 0.69, 0.44, 0.35, "High"),
        _gpu("NVIDIA RTX A4000", "RTX A4000", 16, 0.24, 0.17, 0.16, "Low", max_count=7),
        _gpu("NVIDIA RTX 2000 Ada Generation", "RTX 2000 Ada", 16, 0.24, 0.20, 0.12, "Low"),
        _gpu("NVIDIA RTX PRO 4500 Blackwell", "RTX PRO 4500", 32, 0.72, None, 0.40, "High"),
        _gpu("NVIDIA H100 NVL", "H100 NVL", 94, 2.79, None, 1.50, None),
        _gpu("AMD Instinct MI300X OAM", "MI300X", 192, 2.49, None, None, None),
    ]


class StandinState:
    """The account the stand-in serves: GPU types, pods, SSH keys, and the fault queues."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.lock = threading.Lock()
        self.gpu_types = default_gpu_types()
        self.pods: dict[str, dict[str, Any]] = {}
        self.pub_key = ""
        self.templates: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.callers: list[tuple[str, str]] = []  # (operation, the bearer key it came with)
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers) of every request
        # Scripted `pod` answers: pod id -> successive updates applied on each read (GetPod, REST getPod).
        self.pod_timeline: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self.hang_release = threading.Event()
        # The runtime new pods report (None: not started, as RunPod answers right after a create).
        self.new_pod_runtime: dict[str, Any] | None = None
        self.next_pod_ids: list[str] = []  # ids the next created pods get (else random), to set up their env
        # A simulated boot (benches): a new pod reports no runtime until this many seconds after its create.
        self.boot_s = 0.0
        self.booting: dict[str, float] = {}  # pod id -> when (time.monotonic) its container is up
        # Data centres and where each GPU type is offered (a type not listed: in every data centre), and the
        # network volumes (REST v2 shape, served by rest_standin.py).
        self.data_centers: dict[str, str] = {"EU-RO-1": "Europe Romania 1", "US-KS-2": "US Kansas 2"}
        self.gpu_data_centers: dict[str, tuple[str, ...]] = {}
        self.network_volumes: dict[str, dict[str, Any]] = {}
        # A new pod is missing from the next `list_lag` pod lists (`myself { pods }`), as a lagging list is.
        self.list_lag = 0
        self.unlisted: dict[str, int] = {}
        # Pod-scoped keys: key -> the pod it belongs to.
        self.pod_keys: dict[str, str] = {}
        self.client_balance = 41.5

    def offered_in(self, gpu_id: str, data_center_id: str | None) -> bool:
        return data_center_id is None or data_center_id in self.gpu_data_centers.get(
            gpu_id, tuple(self.data_centers)
        )

    # --- seeding helpers for tests ---

    def add_pod(self, **overrides: Any) -> dict[str, Any]:
        pod = self._new_pod(
            {"name": "seeded", "gpuTypeId": "NVIDIA GeForce RTX 4090", "cloudType": "SECURE"}, spot=False
        )
        pod.update(overrides)
        self.pods[pod["id"]] = pod
        return pod

    def calls_of(self, operation: str) -> list[dict[str, Any]]:
        return [variables for name, variables in self.calls if name == operation]

    def add_pod_key(self, pod_id: str) -> str:
        """A key scoped to ``pod_id``, as RunPod sets in the pod's env: it may read and stop that pod only."""
        key = f"rpa_POD{secrets.token_hex(8).upper()}"
        self.pod_keys[key] = pod_id
        return key

    def keys_used(self, operation: str) -> list[str]:
        """The bearer key each call of ``operation`` came with."""
        return [key for name, key in self.callers if name == operation]

    # --- resolution ---

    def _gpu(self, gpu_id: str | None) -> dict[str, Any] | None:
        return next((g for g in self.gpu_types if g["id"] == gpu_id), None)

    def _lowest_price(self, gpu: dict[str, Any], price_input: dict[str, Any] | None) -> dict[str, Any]:
        price_input = price_input or {}
        cloud = "SECURE" if price_input.get("secureCloud", True) else "COMMUNITY"
        price = gpu["securePrice"] if cloud == "SECURE" else gpu["communityPrice"]
        stock = gpu["stock"][cloud]
        count = int(price_input.get("gpuCount", 1))
        here = self.offered_in(gpu["id"], price_input.get("dataCenterId"))
        if stock is None or price is None or count > gpu["maxGpuCount"] or not here:
            # Out of stock: the object is there, its fields are null (as recorded 2026-08-20).
            return {
                "uninterruptablePrice": None,
                "minimumBidPrice": None,
                "stockStatus": None,
                "maxUnreservedGpuCount": None,
                "availableGpuCounts": None,
            }
        spot = gpu["secureSpotPrice"] if cloud == "SECURE" else gpu["communitySpotPrice"]
        free = {"High": 8, "Medium": 4, "Low": 2}[stock]
        return {
            "uninterruptablePrice": price,
            "minimumBidPrice": spot,
            "stockStatus": stock,
            "maxUnreservedGpuCount": free,
            "availableGpuCounts": list(range(1, min(free, gpu["maxGpuCount"]) + 1)),
        }

    def gpu_types_view(self, ids: list[str] | None) -> list[dict[str, Any]]:
        out = []
        for gpu in self.gpu_types:
            if ids and gpu["id"] not in ids:
                continue
            view = {k: v for k, v in gpu.items() if k != "stock"}
            view["lowestPrice"] = lambda _info, input=None, g=gpu: self._lowest_price(g, input)
            out.append(view)
        return out

    def _new_pod(self, spec: dict[str, Any], *, spot: bool) -> dict[str, Any]:
        gpu = self._gpu(spec.get("gpuTypeId")) or self.gpu_types[0]
        count = int(spec.get("gpuCount") or 1)
        cloud = spec.get("cloudType") or "ALL"
        secure = cloud != "COMMUNITY" and gpu["securePrice"] is not None
        unit = (spec.get("bidPerGpu") if spot else None) or (
            gpu["securePrice"] if secure else gpu["communityPrice"]
        )
        pod_id = self.next_pod_ids.pop(0) if self.next_pod_ids else ""
        pod_id = pod_id or "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(14))
        env = [f"{e['key']}={e['value']}" for e in spec.get("env") or []]
        return {
            "id": pod_id,
            "name": spec.get("name") or pod_id,
            "desiredStatus": "RUNNING",
            "costPerHr": round(unit * count, 4),
            "adjustedCostPerHr": round(unit * count, 4),
            "gpuCount": count,
            "vcpuCount": 8.0 * count,
            "memoryInGb": 31.0 * count,
            "imageName": spec.get("imageName") or "runpod/pytorch",
            "machineId": "m" + pod_id[:11],
            "containerDiskInGb": spec.get("containerDiskInGb"),
            "volumeInGb": spec.get("volumeInGb"),
            "volumeMountPath": spec.get("volumeMountPath") or "/workspace",
            "networkVolumeId": spec.get("networkVolumeId"),
            "ports": spec.get("ports"),
            "podType": "INTERRUPTABLE" if spot else "RESERVED",
            "lastStatusChange": "Rented by User",
            "uptimeSeconds": 0,
            "env": env,
            "dockerArgs": spec.get("dockerArgs") or "",
            "terminateAfter": spec.get("terminateAfter"),
            "machine": {
                "gpuDisplayName": gpu["displayName"],
                "gpuTypeId": gpu["id"],
                "dataCenterId": spec.get("dataCenterId") or "EU-RO-1",
                "secureCloud": secure,
                "supportPublicIp": secure or bool(spec.get("supportPublicIp")),
                "podHostId": f"{pod_id}-64410065",
            },
            "runtime": self.new_pod_runtime,
            "latestTelemetry": None,
        }

    def _has_capacity(
        self, gpu_id: str | None, cloud: str, count: int, data_center_id: str | None = None
    ) -> bool:
        gpu = self._gpu(gpu_id)
        if gpu is None or not self.offered_in(gpu["id"], data_center_id):
            return False
        clouds = ["SECURE", "COMMUNITY"] if cloud == "ALL" else [cloud]
        return any(gpu["stock"][c] is not None and count <= gpu["maxGpuCount"] for c in clouds)

    def create(self, spec: dict[str, Any], *, spot: bool) -> dict[str, Any]:
        deadline = spec.get("terminateAfter")
        if deadline is not None and not RFC3339.fullmatch(str(deadline)):
            raise graphql.GraphQLError(
                f'Variable "$input" got invalid value "{deadline}" at "input.terminateAfter".'
            )
        ids = spec.get("gpuTypeIdList") or [spec.get("gpuTypeId")]
        cloud = spec.get("cloudType") or "ALL"
        count = int(spec.get("gpuCount") or 1)
        chosen = next((g for g in ids if self._has_capacity(g, cloud, count, spec.get("dataCenterId"))), None)
        if chosen is None:
            raise graphql.GraphQLError(CAPACITY_MESSAGE)
        pod = self._new_pod({**spec, "gpuTypeId": chosen}, spot=spot)
        self.pods[pod["id"]] = pod
        if self.boot_s:
            self.booting[pod["id"]] = time.monotonic() + self.boot_s
            pod["runtime"] = None
        if self.list_lag:
            self.unlisted[pod["id"]] = self.list_lag
        return pod

    def listed(self, *, look: bool = True) -> list[dict[str, Any]]:
        """The pods a list shows now: not terminated, and not still missing from a lagging list. Each
        ``look`` (a core list of pods) brings a lagging pod one list nearer."""
        shown = []
        for pod in self.pods.values():
            if self.unlisted.get(pod["id"]):
                self.unlisted[pod["id"]] -= 1 if look else 0
            elif pod["desiredStatus"] != "TERMINATED":
                shown.append(pod)
        return shown

    def get(self, pod_id: str) -> dict[str, Any] | None:
        pod = self.pods.get(pod_id)
        if pod is not None and self.booting.get(pod_id, float("inf")) <= time.monotonic():
            del self.booting[pod_id]
            pod["runtime"] = self.new_pod_runtime
        if pod is not None and self.pod_timeline[pod_id]:
            pod.update(self.pod_timeline[pod_id].popleft())
        return pod

    def root(self) -> Any:
        state = self

        class Root:
            @staticmethod
            def myself(info: Any) -> dict[str, Any]:
                live = [p for p in state.pods.values() if p["desiredStatus"] != "TERMINATED"]
                # One list of pods is its core query; the extras that follow it see the same moment.
                look = info.operation.name.value == "ListPods"
                return {
                    "id": "user-standin",
                    "pubKey": state.pub_key,
                    "pods": lambda _info: state.listed(look=look),
                    "endpoints": list(state.endpoints.values()),
                    "currentSpendPerHr": sum(p["costPerHr"] for p in live if p["desiredStatus"] == "RUNNING"),
                    "clientBalance": state.client_balance,
                }

            @staticmethod
            def pod(info: Any, input: dict[str, Any]) -> dict[str, Any] | None:
                # One read of a pod is its core query; the extras that follow it see the same moment.
                core = info.operation.name.value == "GetPod"
                pod = state.get(input["podId"]) if core else state.pods.get(input["podId"])
                return None if pod is None or pod["desiredStatus"] == "TERMINATED" else pod

            @staticmethod
            def gpuTypes(_info: Any, input: dict[str, Any] | None = None) -> list[dict[str, Any]]:
                input = input or {}
                ids = input.get("ids") or ([input["id"]] if input.get("id") else None)
                return state.gpu_types_view(ids)

            @staticmethod
            def podFindAndDeployOnDemand(_info: Any, input: dict[str, Any]) -> dict[str, Any]:
                return state.create(input, spot=False)

            @staticmethod
            def podRentInterruptable(_info: Any, input: dict[str, Any]) -> dict[str, Any]:
                gpu = state._gpu(input.get("gpuTypeId"))
                floor = gpu["secureSpotPrice"] if gpu else None
                if floor is not None and float(input.get("bidPerGpu") or 0) < floor:
                    raise graphql.GraphQLError(f"Your bid price is below the minimum bid price of {floor}.")
                return state.create(input, spot=True)

            @staticmethod
            def _existing(pod_id: str, verb: str) -> dict[str, Any]:
                pod = state.pods.get(pod_id)
                if pod is None or pod["desiredStatus"] == "TERMINATED":
                    raise graphql.GraphQLError(f"Could not {verb} pod: pod {pod_id} not found.")
                return pod

            @staticmethod
            def podResume(_info: Any, input: dict[str, Any]) -> dict[str, Any]:
                pod = Root._existing(input["podId"], "resume")
                pod.update(desiredStatus="RUNNING", runtime=None, uptimeSeconds=0)
                return pod

            @staticmethod
            def podBidResume(_info: Any, input: dict[str, Any]) -> dict[str, Any]:
                return Root.podResume(_info, input)

            @staticmethod
            def podStop(_info: Any, input: dict[str, Any]) -> dict[str, Any]:
                pod = Root._existing(input["podId"], "stop")
                pod.update(desiredStatus="EXITED", runtime=None)
                return pod

            @staticmethod
            def podEditName(_info: Any, input: dict[str, Any]) -> dict[str, Any]:
                pod = Root._existing(input["podId"], "rename")
                pod["name"] = input["name"]
                return pod

            @staticmethod
            def podTerminate(_info: Any, input: dict[str, Any]) -> None:
                Root._existing(input["podId"], "terminate")["desiredStatus"] = "TERMINATED"

            @staticmethod
            def saveTemplate(_info: Any, input: dict[str, Any]) -> dict[str, Any]:
                template = {**input, "id": input.get("id") or "tpl" + secrets.token_hex(5)}
                state.templates[template["name"]] = template
                return template

            @staticmethod
            def saveEndpoint(_info: Any, input: dict[str, Any]) -> dict[str, Any]:
                if not any(t["id"] == input.get("templateId") for t in state.templates.values()):
                    raise graphql.GraphQLError("Template not found.")
                endpoint = {**input, "id": input.get("id") or secrets.token_hex(7)}
                state.endpoints[endpoint["id"]] = endpoint
                return endpoint

            @staticmethod
            def deleteEndpoint(_info: Any, id: str) -> None:
                if state.endpoints.pop(id, None) is None:
                    raise graphql.GraphQLError("Endpoint not found.")

            @staticmethod
            def deleteTemplate(_info: Any, templateName: str) -> None:
                if any(
                    e.get("templateId") == state.templates.get(templateName, {}).get("id")
                    for e in state.endpoints.values()
                ):
                    raise graphql.GraphQLError("Template is in use by an endpoint.")
                state.templates.pop(templateName, None)

            @staticmethod
            def updateUserSettings(_info: Any, input: dict[str, Any]) -> dict[str, Any]:
                state.pub_key = input["pubKey"]
                return {"id": "user-standin", "pubKey": state.pub_key}

        return Root


def _root_field(document: graphql.DocumentNode) -> str:
    for definition in document.definitions:
        if isinstance(definition, graphql.OperationDefinitionNode):
            first = definition.selection_set.selections[0]
            assert isinstance(first, graphql.FieldNode)
            return first.name.value
    return ""


def _pod_key_refusal(own_pod: str | None, document: graphql.DocumentNode, variables: dict[str, Any]) -> str:
    """Why a pod-scoped key may not make this call ("" when it may, or when the key is the account's)."""
    if own_pod is None or (
        _root_field(document) in POD_KEY_FIELDS and (variables.get("input") or {}).get("podId") == own_pod
    ):
        return ""
    return f"This API key is scoped to pod {own_pod}: it may read and stop that pod, nothing else."


class _Handler(BaseHTTPRequestHandler):
    server: StandinServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(
        self,
        status: int,
        body: str,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        raw = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def _valid_document(self, query: str) -> graphql.DocumentNode | None:
        """The parsed document, or None once RunPod's HTTP 400 answer for an invalid one was sent."""
        try:
            document = graphql.parse(query)
        except graphql.GraphQLError as exc:
            self._send(
                400,
                json.dumps(
                    {"errors": [{"message": exc.message, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]}
                ),
            )
            return None
        problems = graphql.validate(merged_schema(), document)
        if problems:
            errors = [
                {"message": p.message, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}} for p in problems
            ]
            self._send(400, json.dumps({"errors": errors}))
            return None
        return document

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        with state.lock:
            state.requests.append((self.path, dict(self.headers.items())))
        if self.path != "/graphql":
            self._send(404, json.dumps({"error": "not found"}))
            return
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        if key != state.api_key and key not in state.pod_keys:
            self._send(401, json.dumps({"errors": [{"message": "Unauthorized"}]}))
            return
        payload = json.loads(raw)
        document = self._valid_document(payload["query"])
        if document is None:
            return
        operation = payload.get("operationName") or ""
        variables = payload.get("variables") or {}
        refusal = _pod_key_refusal(state.pod_keys.get(key), document, variables)
        if refusal:
            self._send(403, json.dumps({"errors": [{"message": refusal}]}))
            return
        with state.lock:
            state.calls.append((operation, variables))
            state.callers.append((operation, key))
            fault = state.faults[operation].popleft() if state.faults[operation] else None
        if fault is not None and fault.after_apply and fault.kind in ("http", "graphql_errors"):
            with state.lock:
                graphql.execute(merged_schema(), document, root_value=state.root(), variable_values=variables)
        if fault is not None and fault.kind == "hang":
            state.hang_release.wait()
            self.close_connection = True
            return
        if fault is not None and fault.kind == "http":
            self._send(fault.status, fault.body, fault.content_type, fault.headers)
            return
        if fault is not None and fault.kind == "graphql_errors":
            self._send(200, json.dumps({"data": None, "errors": fault.errors}))
            return
        if fault is not None and fault.kind == "null_data":
            self._send(200, json.dumps({"data": {_root_field(document): None}}))
            return
        with state.lock:
            result = graphql.execute(
                merged_schema(),
                document,
                root_value=state.root(),
                variable_values=variables,
                operation_name=operation or None,
            )
        if fault is not None and fault.kind == "apply_then_hang":
            state.hang_release.wait()
            self.close_connection = True
            return
        if fault is not None and fault.kind == "drop_after_apply":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [{"message": e.message, "path": e.path} for e in result.errors]
        text = json.dumps(body)
        self._send(200, text[: len(text) // 2] if fault is not None and fault.kind == "truncated" else text)


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: StandinState) -> None:
        self.state = state
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/graphql"


def start_standin(api_key: str) -> tuple[StandinServer, Callable[[], None]]:
    """Start a stand-in on a free loopback port; returns it and a stop function."""
    server = StandinServer(StandinState(api_key))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()

    def stop() -> None:
        server.state.hang_release.set()
        server.shutdown()
        server.server_close()

    return server, stop
