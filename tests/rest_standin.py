"""A stand-in of RunPod's REST v2 API (``/v2/...``), as strict as the GraphQL one, for tests and cassettes.

It serves the same account as ``runpod_standin`` (one :class:`StandinState`: pods, GPU types, endpoints,
keys, volumes), so a test seeds one state and reads it through either API. Strict where RunPod is:
- every request is validated against RunPod's OpenAPI spec (``data/runpod-openapi/rest-v2.openapi.json``)
  with openapi-core: an unknown field, a wrong type or a missing bearer key is refused with RunPod's problem
  answer (422 for a body, 400 for a parameter, 401 for the key) and the refusal is recorded;
- every answer the stand-in gives is validated against the spec too; one that breaks it is recorded in
  ``spec_violations`` (the fixtures fail the test) and sent as a 500, so a stand-in bug cannot pass silently.
Shapes follow the spec's examples and ``data/runpod-samples/`` (the recorded capacity 400). Faults are queued
per operationId (``createPod``, ``podAction``...) in ``state.faults``, first in first out: RunPod's capacity
400, 429 with ``Retry-After``, 5xx pages, a connection dropped after acting, hangs.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Callable
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import graphql
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from runpod_standin import CAPACITY_MESSAGE, Fault, StandinState

SPEC = Path(__file__).parent / "data" / "runpod-openapi" / "rest-v2.openapi.json"
HOST = "https://api.runpod.io"  # the spec's server: requests are validated as if sent there
PROBLEM = "application/problem+json"


@cache
def openapi() -> OpenAPI:
    """RunPod's spec, loaded once (about a second); problem+json bodies are read as JSON."""
    return OpenAPI.from_dict(
        json.loads(SPEC.read_text()), config=Config(extra_media_type_deserializers={PROBLEM: json.loads})
    )


def problem(status: int, title: str, detail: str, errors: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return body


def capacity_fault(message: str = CAPACITY_MESSAGE) -> Fault:
    """RunPod's REST answer when no machine has room (runpod-samples/rest-v2-error-400-no-instances...)."""
    return Fault.http(400, json.dumps(problem(400, "Bad Request", message)), PROBLEM)


def rate_limit_fault(retry_after_s: int) -> Fault:
    body = problem(429, "Too Many Requests", "rate limit exceeded for the minute window")
    return Fault.http(429, json.dumps(body), PROBLEM, **{"Retry-After": str(retry_after_s)})


def rest_equivalent(fault: Fault) -> Fault:
    """A GraphQL-shaped fault as REST v2 answers the same condition: every no-capacity shape (message, code,
    null data) is the one capacity 400; transport faults stay as they are."""
    if fault.kind == "null_data":
        return capacity_fault()
    if fault.kind == "graphql_errors":
        return capacity_fault(fault.errors[0]["message"])
    return fault


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


# --- the account's state in REST v2 shapes ------------------------------------------------------------------

_REST_STATUS = {"EXITED": "EXITED", "PAUSED": "EXITED", "DEAD": "ERROR", "TERMINATED": "TERMINATED"}
_ACTIONS = {
    "RUNNING": ["stop", "restart", "terminate"],
    "PROVISIONING": ["stop", "terminate"],
    "STARTING": ["stop", "terminate"],
    "EXITED": ["start", "terminate"],
    "ERROR": ["start", "terminate"],
    "TERMINATED": [],
}


def _percent(value: Any) -> int:
    return round(value) if isinstance(value, int | float) else 0


def _rest_status(pod: dict[str, Any]) -> str:
    desired = pod["desiredStatus"]
    if desired in ("RUNNING", "RESTARTING"):
        return "RUNNING" if pod.get("runtime") else "STARTING"
    return "PROVISIONING" if desired == "CREATED" else _REST_STATUS.get(desired, "EXITED")


def _rest_runtime(runtime: dict[str, Any] | None) -> dict[str, Any] | None:
    if not runtime:
        return None
    out: dict[str, Any] = {
        "uptime": int(runtime.get("uptimeInSeconds") or 0),
        "gpus": [
            {"util": _percent(g.get("gpuUtilPercent")), "memoryUtil": _percent(g.get("memoryUtilPercent"))}
            for g in runtime.get("gpus") or []
        ],
    }
    container = runtime.get("container")
    if container:
        out["cpu"] = {"util": _percent(container.get("cpuPercent"))}
        out["memory"] = {"util": _percent(container.get("memoryPercent"))}
    if runtime.get("ports") is not None:
        # REST v2 ports carry no isIpPublic: a private address stands for a pod without a public IP.
        out["ports"] = [
            {"private": p["privatePort"], "public": p["publicPort"], "type": p["type"], "ip": p["ip"]}
            for p in runtime["ports"]
        ]
    return out


def _ssh(pod: dict[str, Any], status: str) -> dict[str, Any]:
    def endpoint(host: str, port: int, user: str) -> dict[str, Any]:
        return {"host": host, "port": port, "username": user, "command": f"ssh {user}@{host} -p {port}"}

    ports = (pod.get("runtime") or {}).get("ports") or []
    direct = next(
        (p for p in ports if p["privatePort"] == 22 and p["type"] == "tcp" and p["isIpPublic"]), None
    )
    return {
        "proxy": endpoint("ssh.runpod.io", 22, f"{pod['id']}-64410065"),
        "direct": endpoint(direct["ip"], direct["publicPort"], "root")
        if direct and status == "RUNNING"
        else None,
    }


def rest_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """A stand-in pod (GraphQL-shaped state) as ``GET /v2/pods/{id}`` answers it."""
    status = _rest_status(pod)
    machine = pod.get("machine") or {}
    mounts: dict[str, Any] = {}
    if pod.get("networkVolumeId"):
        mounts["network"] = [
            {"volumeId": pod["networkVolumeId"], "path": pod.get("volumeMountPath") or "/workspace"}
        ]
    elif pod.get("volumeInGb"):
        mounts["persistent"] = {
            "size": int(pod["volumeInGb"]),
            "path": pod.get("volumeMountPath") or "/workspace",
        }
    return {
        "id": pod["id"],
        "name": pod["name"],
        "status": status,
        "actions": _ACTIONS[status],
        "image": pod.get("imageName") or "",
        "args": pod.get("dockerArgs") or "",
        "disk": int(pod.get("containerDiskInGb") or 20),
        "mounts": mounts,
        "ports": [p for p in (pod.get("ports") or "").split(",") if p],
        "env": dict(e.split("=", 1) for e in pod.get("env") or [] if "=" in e),
        "registry": None,
        "gpu": {"id": machine.get("gpuTypeId") or "", "count": int(pod.get("gpuCount") or 1)},
        "cloud": "SECURE" if machine.get("secureCloud") else "COMMUNITY",
        "dataCenterId": machine.get("dataCenterId"),
        "cudaVersion": "12.8",
        "ssh": _ssh(pod, status),
        "template": None,
        "cost": float(pod.get("costPerHr") or 0.0) if status != "EXITED" else 0.0,
        "locked": False,
        "globalNetworking": {"enabled": False},
        "runtime": _rest_runtime(pod.get("runtime")) if status == "RUNNING" else None,
        "createdAt": "2026-11-26T12:00:00Z",
        "startedAt": "2026-11-26T12:01:00Z" if status == "RUNNING" else None,
    }


def _gpu_view(state: StandinState, gpu: dict[str, Any], cloud: str, count: int) -> dict[str, Any]:
    price = gpu["securePrice"] if cloud == "SECURE" else gpu["communityPrice"]
    stock = gpu["stock"][cloud]
    level = str(stock).upper() if stock and price is not None and count <= gpu["maxGpuCount"] else "NONE"
    view: dict[str, Any] = {
        "id": gpu["id"],
        "name": gpu["displayName"],
        "pool": None,
        "manufacturer": "AMD" if gpu["id"].startswith("AMD") else "NVIDIA",
        "memory": gpu["memoryInGb"],
        "secure": gpu["securePrice"] is not None,
        "community": gpu["communityPrice"] is not None,
        "price": {"secure": gpu["securePrice"] or 0.0, "community": gpu["communityPrice"] or 0.0},
        "maxCount": {"secure": gpu["maxGpuCount"], "community": gpu["maxGpuCount"]},
        "availability": level,
    }
    if level != "NONE":
        view["dataCenters"] = [
            {"id": dc, "name": name, "availability": level}
            for dc, name in state.data_centers.items()
            if state.offered_in(gpu["id"], dc)
        ]
    return view


def _template_view(template: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": template["id"],
        "name": template["name"],
        "image": template.get("imageName") or "",
        "args": template.get("dockerArgs") or "",
        "disk": int(template.get("containerDiskInGb") or 10),
        "mounts": {},
        "ports": [],
        "env": {e["key"]: e["value"] for e in template.get("env") or []},
        "registry": None,
        "serverless": bool(template.get("isServerless")),
        "public": False,
        "category": "NVIDIA",
        "startSsh": bool(template.get("startSsh")),
        "startJupyter": False,
        "allowedCudaVersions": [],
    }


def _endpoint_view(endpoint: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": endpoint["id"],
        "name": endpoint["name"],
        "type": "QUEUE",
        "gpu": {
            "pools": [p for p in str(endpoint.get("gpuIds") or "").split(",") if p],
            "count": 1,
            "allowedCudaVersions": [],
            "minCudaVersion": None,
        },
        "workers": {
            "min": endpoint.get("workersMin") or 0,
            "max": endpoint.get("workersMax") or 0,
            "idleTimeout": endpoint.get("idleTimeout") or 5,
        },
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": float(endpoint.get("scalerValue") or 4)},
        "dataCenterIds": [d for d in str(endpoint.get("locations") or "").split(",") if d],
        "networkVolumes": [endpoint["networkVolumeId"]] if endpoint.get("networkVolumeId") else [],
        "timeout": endpoint.get("executionTimeoutMs") or 0,
        "flashboot": "OFF",
        "createdAt": "2026-11-26T12:00:00Z",
    }


def _new_id() -> str:
    return "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10))


class RestApp:
    """The operations, over the shared state: each returns ``(status, body or None)`` or raises Problem."""

    def __init__(self, state: StandinState) -> None:
        self.state = state

    def _pod(self, pod_id: str) -> dict[str, Any]:
        pod = self.state.get(pod_id)
        if pod is None or pod["desiredStatus"] == "TERMINATED":
            raise Problem(404, "Not Found", "pod not found")
        return pod

    def listPods(self, _params: dict[str, str], _body: Any) -> tuple[int, Any]:
        live = [p for p in self.state.pods.values() if p["desiredStatus"] != "TERMINATED"]
        return 200, {"pods": [rest_pod(p) for p in live]}

    def getPod(self, params: dict[str, str], _body: Any) -> tuple[int, Any]:
        return 200, rest_pod(self._pod(params["id"]))

    def createPod(self, _params: dict[str, str], body: Any) -> tuple[int, Any]:
        mounts = body.get("mounts") or {}
        network = (mounts.get("network") or [None])[0]
        persistent = mounts.get("persistent") or {}
        data_center = (body.get("dataCenterIds") or [None])[0]
        if network is not None:
            volume = self.state.network_volumes.get(network["volumeId"])
            if volume is None:
                raise Problem(400, "Bad Request", f"network volume {network['volumeId']} not found")
            if data_center not in (None, volume["dataCenter"]) or body.get("cloud") == "COMMUNITY":
                raise Problem(
                    400, "Bad Request", "network volume must be in the pod's data center, on SECURE"
                )
            data_center = volume["dataCenter"]
        spec = {
            "name": body["name"],
            "imageName": body.get("image"),
            "gpuTypeId": body["gpu"]["id"],
            "gpuCount": body["gpu"].get("count", 1),
            "cloudType": body.get("cloud", "SECURE"),
            "containerDiskInGb": body.get("disk"),
            "volumeInGb": persistent.get("size"),
            "volumeMountPath": persistent.get("path") or (network or {}).get("path"),
            "networkVolumeId": (network or {}).get("volumeId"),
            "ports": ",".join(body.get("ports") or []),
            "env": [{"key": k, "value": v} for k, v in (body.get("env") or {}).items()],
            "dockerArgs": body.get("args"),
            "dataCenterId": data_center,
        }
        try:
            pod = self.state.create(spec, spot=False)
        except graphql.GraphQLError as exc:  # the state's no-capacity answer
            raise Problem(400, "Bad Request", str(exc)) from exc
        return 201, rest_pod(pod)

    def updatePod(self, params: dict[str, str], body: Any) -> tuple[int, Any]:
        pod = self._pod(params["id"])
        unsupported = set(body) - {"name"}
        if unsupported:  # the stand-in keeps to what the SDK sends; RunPod takes more
            raise Problem(
                400, "Bad Request", f"the stand-in updates only the name, not {sorted(unsupported)}"
            )
        pod["name"] = body["name"]
        return 200, rest_pod(pod)

    def deletePod(self, params: dict[str, str], _body: Any) -> tuple[int, Any]:
        self._pod(params["id"])["desiredStatus"] = "TERMINATED"
        return 204, None

    def podAction(self, params: dict[str, str], body: Any) -> tuple[int, Any]:
        pod = self._pod(params["id"])
        action = body["action"]
        if action not in _ACTIONS[_rest_status(pod)]:
            raise Problem(
                409, "Conflict", f"action {action} is not valid for a pod that is {_rest_status(pod)}"
            )
        if action == "terminate":
            pod["desiredStatus"] = "TERMINATED"
            return 204, None
        if action == "stop":
            pod.update(desiredStatus="EXITED", runtime=None)
        else:  # start, restart
            pod.update(desiredStatus="RUNNING", runtime=None, uptimeSeconds=0)
        return 200, rest_pod(pod)

    def listGpuTypes(self, params: dict[str, str], _body: Any) -> tuple[int, Any]:
        cloud, count = params.get("cloud", "SECURE"), int(params.get("count", "1"))
        return 200, {"gpus": [_gpu_view(self.state, g, cloud, count) for g in self.state.gpu_types]}

    def getSshKeys(self, _params: dict[str, str], _body: Any) -> tuple[int, Any]:
        return 200, {"keys": [k for k in self.state.pub_key.splitlines() if k.strip()]}

    def updateSshKeys(self, _params: dict[str, str], body: Any) -> tuple[int, Any]:
        self.state.pub_key = "".join(f"{k}\n" for k in body["keys"])
        return 200, {"keys": body["keys"]}

    def listTemplates(self, _params: dict[str, str], _body: Any) -> tuple[int, Any]:
        return 200, {"templates": [_template_view(t) for t in self.state.templates.values()]}

    def createTemplate(self, _params: dict[str, str], body: Any) -> tuple[int, Any]:
        template = {
            "id": "tpl" + secrets.token_hex(5),
            "name": body["name"],
            "imageName": body["image"],
            "containerDiskInGb": body.get("disk"),
            "env": [{"key": k, "value": v} for k, v in (body.get("env") or {}).items()],
            "isServerless": body.get("serverless", False),
            "startSsh": body.get("startSsh", True),
        }
        self.state.templates[template["name"]] = template
        return 201, _template_view(template)

    def deleteTemplate(self, params: dict[str, str], _body: Any) -> tuple[int, Any]:
        name = next((n for n, t in self.state.templates.items() if t["id"] == params["id"]), None)
        if name is None:
            raise Problem(404, "Not Found", "template not found")
        if any(e.get("templateId") == params["id"] for e in self.state.endpoints.values()):
            raise Problem(400, "Bad Request", "template is in use by an endpoint")
        del self.state.templates[name]
        return 204, None

    def listEndpoints(self, _params: dict[str, str], _body: Any) -> tuple[int, Any]:
        return 200, {"endpoints": [_endpoint_view(e) for e in self.state.endpoints.values()]}

    def createEndpoint(self, _params: dict[str, str], body: Any) -> tuple[int, Any]:
        if not any(t["id"] == body.get("templateId") for t in self.state.templates.values()):
            raise Problem(404, "Not Found", "template not found")
        workers = body.get("workers") or {}
        endpoint = {
            "id": secrets.token_hex(7),
            "name": body["name"],
            "templateId": body["templateId"],
            "gpuIds": ",".join(body["gpu"]["pools"]),
            "workersMin": workers.get("min", 0),
            "workersMax": workers.get("max", 3),
            "idleTimeout": workers.get("idleTimeout", 10),
            "executionTimeoutMs": body.get("timeout", 0),
            "scalerValue": body["scaling"].get("queueDelay", 4),
            "networkVolumeId": (body.get("networkVolumes") or [None])[0],
            "locations": ",".join(body.get("dataCenterIds") or []),
        }
        self.state.endpoints[endpoint["id"]] = endpoint
        return 201, _endpoint_view(endpoint)

    def deleteEndpoint(self, params: dict[str, str], _body: Any) -> tuple[int, Any]:
        if self.state.endpoints.pop(params["id"], None) is None:
            raise Problem(404, "Not Found", "endpoint not found")
        return 204, None

    def listNetworkVolumes(self, _params: dict[str, str], _body: Any) -> tuple[int, Any]:
        return 200, {"networkVolumes": list(self.state.network_volumes.values())}

    def createNetworkVolume(self, _params: dict[str, str], body: Any) -> tuple[int, Any]:
        if body["dataCenter"] not in self.state.data_centers:
            raise Problem(400, "Bad Request", f"unknown data center {body['dataCenter']}")
        volume = {"id": _new_id(), "type": "STANDARD", **body}
        self.state.network_volumes[volume["id"]] = volume
        return 201, volume

    def deleteNetworkVolume(self, params: dict[str, str], _body: Any) -> tuple[int, Any]:
        if self.state.network_volumes.pop(params["id"], None) is None:
            raise Problem(404, "Not Found", "network volume not found")
        return 204, None


ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(f"^{pattern}$"), operation)
    for method, pattern, operation in (
        ("GET", "/v2/pods", "listPods"),
        ("POST", "/v2/pods", "createPod"),
        ("GET", "/v2/pods/(?P<id>[^/]+)", "getPod"),
        ("DELETE", "/v2/pods/(?P<id>[^/]+)", "deletePod"),
        ("POST", "/v2/pods/(?P<id>[^/]+)/action", "podAction"),
        ("GET", "/v2/catalog/gpus", "listGpuTypes"),
        ("GET", "/v2/account/ssh-keys", "getSshKeys"),
        ("PUT", "/v2/account/ssh-keys", "updateSshKeys"),
        ("GET", "/v2/templates", "listTemplates"),
        ("POST", "/v2/templates", "createTemplate"),
        ("DELETE", "/v2/templates/(?P<id>[^/]+)", "deleteTemplate"),
        ("GET", "/v2/serverless", "listEndpoints"),
        ("POST", "/v2/serverless", "createEndpoint"),
        ("DELETE", "/v2/serverless/(?P<id>[^/]+)", "deleteEndpoint"),
        ("GET", "/v2/network-volumes", "listNetworkVolumes"),
        ("POST", "/v2/network-volumes", "createNetworkVolume"),
        ("DELETE", "/v2/network-volumes/(?P<id>[^/]+)", "deleteNetworkVolume"),
    )
)


class _Handler(BaseHTTPRequestHandler):
    server: RestStandinServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(
        self, status: int, raw: bytes, content_type: str | None, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def _answer(
        self, request: MockRequest, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        """Send an answer of the API, after checking it against the spec."""
        content_type = None if body is None else ("application/json" if status < 300 else PROBLEM)
        raw = b"" if body is None else json.dumps(body).encode()
        try:
            openapi().validate_response(
                request,
                MockResponse(raw, status_code=status, content_type=content_type, headers=headers or {}),
            )
        except Exception as exc:
            self.server.spec_violations.append(f"{request.method.upper()} {request.path} -> {status}: {exc}")
            raw = json.dumps(problem(500, "Stand-in bug", f"answer breaks the spec: {exc}"[:2000])).encode()
            status, content_type, headers = 500, PROBLEM, None
        self._send(status, raw, content_type, headers)

    def _handle(self, method: str) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        url = urlsplit(self.path)
        args = dict(parse_qsl(url.query))
        with state.lock:
            state.requests.append((url.path, dict(self.headers.items())))
        route = next(
            ((op, m) for meth, pattern, op in ROUTES if meth == method and (m := pattern.match(url.path))),
            None,
        )
        request = MockRequest(
            HOST,
            method.lower(),
            url.path,
            args=args,
            headers=dict(self.headers.items()),
            data=raw or None,
            content_type=self.headers.get("Content-Type") or "application/json",
        )
        if route is None:
            self._send(404, json.dumps(problem(404, "Not Found", "no such route")).encode(), PROBLEM)
            return
        operation, match = route
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        refusal = _key_refusal(state, key, operation, match.groupdict().get("id"), raw)
        if refusal is not None:
            self._answer(request, refusal[0], problem(refusal[0], refusal[1], refusal[2]))
            return
        try:
            openapi().validate_request(request)
        except Exception as exc:
            self.server.rejections.append(f"{method} {url.path}: {exc}")
            body_error = "body" in type(exc).__name__.lower() or "Body" in str(exc)
            status = 422 if body_error else 400
            title = "Unprocessable Entity" if body_error else "Bad Request"
            self._answer(
                request, status, problem(status, title, "Request validation failed.", [str(exc)[:1000]])
            )
            return
        body = json.loads(raw) if raw else None
        with state.lock:
            state.calls.append((operation, body if isinstance(body, dict) else {}))
            state.callers.append((operation, key))
            fault = state.faults[operation].popleft() if state.faults[operation] else None
        if fault is not None and fault.kind == "hang":
            state.hang_release.wait()
            self.close_connection = True
            return
        if fault is not None and fault.kind == "http":
            if fault.content_type == PROBLEM:  # RunPod's own answer: it must match the spec too
                self._answer(request, fault.status, json.loads(fault.body), fault.headers)
            else:  # a proxy's page (Cloudflare), not the API's
                self._send(fault.status, fault.body.encode(), fault.content_type, fault.headers)
            return
        try:
            with state.lock:
                status, answer = getattr(self.server.app, operation)(match.groupdict() | args, body)
        except Problem as exc:
            self._answer(request, exc.status, problem(exc.status, exc.title, exc.detail))
            return
        if fault is not None and fault.kind == "apply_then_hang":
            state.hang_release.wait()
            self.close_connection = True
            return
        if fault is not None and fault.kind == "drop_after_apply":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self._answer(request, status, answer)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


class RestStandinServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: StandinState) -> None:
        self.state = state
        self.app = RestApp(state)
        self.rejections: list[str] = []  # requests refused for breaking the spec
        self.spec_violations: list[str] = []  # answers of ours that broke it: stand-in bugs
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v2"


def _key_refusal(
    state: StandinState, key: str, operation: str, pod_id: str | None, raw: bytes
) -> tuple[int, str, str] | None:
    """Why a bearer key may not make this call (status, title, detail), or None when it may. A pod-scoped key
    (RunPod's RUNPOD_API_KEY inside a pod) may read its own pod and stop it, nothing else."""
    if key != state.api_key and key not in state.pod_keys:
        return 401, "Unauthorized", "missing or invalid bearer token"
    own_pod = state.pod_keys.get(key)
    if own_pod is None:
        return None
    stops = operation == "podAction" and b'"stop"' in raw
    if pod_id == own_pod and (operation == "getPod" or stops):
        return None
    return (
        403,
        "Forbidden",
        f"This API key is scoped to pod {own_pod}: it may read and stop that pod, nothing else.",
    )


def start_rest_standin(state: StandinState) -> tuple[RestStandinServer, Callable[[], None]]:
    """Serve ``state`` over REST v2 on a free loopback port; returns the server and a stop function."""
    openapi()  # load the spec before the first request, not inside a test's timed call
    server = RestStandinServer(state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()

    def stop() -> None:
        state.hang_release.set()
        server.shutdown()
        server.server_close()

    return server, stop
