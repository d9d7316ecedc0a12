"""Locust load test for Batchwise over gRPC and TF Serving REST: predict at several row counts plus metadata.

    locust -f loadtests/locustfile.py --headless --host 127.0.0.1:8500 -u 16 -r 16 -t 30s \
        --models iris,digits --rows 1,8,32 --metadata-ratio 0.1 --max-p99-ms 200 --min-rps 50
    locust -f loadtests/locustfile.py RestUser --headless --host http://127.0.0.1:8501 -u 16 -t 30s ...

Protocols (--protocols, named like the servers' `protocol` metric label), same models and rows, equal weights:
  tfserving_grpc  BatchwiseUser: TF Serving's gRPC API (Predict, GetModelMetadata) at --host
  v2_grpc         V2GrpcUser: the Open Inference Protocol (ModelInfer with raw contents, ModelMetadata) at --host
  tfserving_rest  RestUser: TF Serving's REST API (JSON :predict, metadata) at --rest-host, or at an http(s) --host
By default both gRPC users run unless --host is an http(s):// URL, and REST runs when it has a URL. Naming
user classes at the end of the command line also works (e.g. `... V2GrpcUser`).

Every option below also reads a BATCHWISE_LOADTEST_* environment variable (shown in --help). Each user
discovers the models' signatures with GetModelMetadata once (per process), pre-serializes its requests and
then sends them back to back (closed loop; --think-time-ms adds a pause). When locust quits, the thresholds
are checked against the aggregated stats and the exit code is 1 if any failed (0 otherwise: failures below
--max-failure-ratio do not fail the run).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time

import gevent.lock
import grpc
from grpc_user import NAME_KEY, GrpcUser
from locust import FastHttpUser, events, task
from locust.exception import LocustError
from locust.runners import WorkerRunner
from rest_scenarios import build_rest_plan
from scenarios import Plan, build_plan, build_v2_plan, parse_csv, parse_rows
from thresholds import Thresholds

LOG = logging.getLogger("batchwise.loadtest")
_PLANS: dict[tuple, Plan] = {}
_PLAN_LOCK = gevent.lock.Semaphore()
PROTOCOL_USERS = {"tfserving_grpc": "BatchwiseUser", "v2_grpc": "V2GrpcUser", "tfserving_rest": "RestUser"}


@events.init_command_line_parser.add_listener
def add_options(parser) -> None:
    """Batchwise scenario and threshold options (flags or BATCHWISE_LOADTEST_* variables)."""
    def option(flag: str, **kwargs) -> None:
        env_var = "BATCHWISE_LOADTEST_" + flag.removeprefix("--").replace("-", "_").upper()
        parser.add_argument(flag, env_var=env_var, **kwargs)

    option("--models", default="iris,digits", help="comma-separated model names to Predict on")
    option("--rows", default="1,8,32", help="comma-separated rows per Predict request (one stats entry each)")
    option("--variant", default="", help="ask for a variant (x-batchwise-variant), e.g. float16; default: server's")
    option("--signature", default="", help="signature name; default serving_default")
    option("--metadata-ratio", type=float, default=0.1, help="fraction of calls that are GetModelMetadata")
    option("--think-time-ms", type=float, default=0.0, help="pause between a user's calls (0: closed loop)")
    option("--request-timeout-s", type=float, default=10.0, help="deadline of each call")
    option("--rest-host", default="", help="RestUser's base URL, e.g. http://127.0.0.1:8501 (default: --host)")
    option("--protocols", default="", help=f"comma-separated, of {', '.join(PROTOCOL_USERS)}; default: by the hosts")
    option("--max-failure-ratio", type=float, default=0.01, include_in_web_ui=False,
           help="fail the run above this fraction of failed calls")
    option("--max-p95-ms", type=float, default=None, include_in_web_ui=False, help="fail above this p95 latency")
    option("--max-p99-ms", type=float, default=None, include_in_web_ui=False, help="fail above this p99 latency")
    option("--min-rps", type=float, default=None, include_in_web_ui=False, help="fail below this throughput")


def chosen_protocols(options) -> list[str]:
    """--protocols, or by default: gRPC unless --host is an http(s):// URL, REST when a REST URL is known.

    Raises ValueError for an unknown protocol name."""
    if options.protocols:
        chosen = parse_csv(options.protocols)
        unknown = sorted(set(chosen) - set(PROTOCOL_USERS))
        if unknown:
            raise ValueError(f"--protocols: unknown {unknown}; expected some of {', '.join(PROTOCOL_USERS)}")
        return chosen
    http_host = (options.host or "").startswith(("http://", "https://"))
    grpc_protocols = [] if http_host else ["tfserving_grpc", "v2_grpc"]
    return [*grpc_protocols, *(["tfserving_rest"] if http_host or options.rest_host else [])]


@events.init.add_listener
def keep_chosen_users(environment, **_kwargs) -> None:
    """Run only the User classes of the chosen protocols (others in this file stay idle)."""
    if environment.parsed_options is None:
        return
    wanted = {PROTOCOL_USERS[p] for p in chosen_protocols(environment.parsed_options)}
    ours = set(PROTOCOL_USERS.values())
    kept = [u for u in environment.user_classes if u.__name__ not in ours or u.__name__ in wanted]
    environment.user_classes[:] = kept
    LOG.info("protocols: %s", ", ".join(u.__name__ for u in environment.user_classes))


def plan_for(environment, target: str, protocol: str = "tfserving_grpc") -> Plan:
    """The process-wide Plan of `protocol` (a PROTOCOL_USERS key) for `target`, discovered on first use.

    Raises what build_plan / build_v2_plan / build_rest_plan raise.
    """
    options = environment.parsed_options
    key = (protocol, target, options.models, options.rows, options.signature, options.variant, options.metadata_ratio)
    with _PLAN_LOCK:
        if key not in _PLANS:
            started = time.monotonic()
            models, rows = parse_csv(options.models), parse_rows(options.rows)
            common = {"variant": options.variant, "metadata_ratio": options.metadata_ratio}
            if protocol == "v2_grpc":
                _PLANS[key] = build_v2_plan(target, models, rows, **common)
            else:
                builder = build_rest_plan if protocol == "tfserving_rest" else build_plan
                _PLANS[key] = builder(target, models, rows, signature=options.signature, **common)
            names = ", ".join(s.name for s in _PLANS[key].predicts + _PLANS[key].metadata)
            LOG.info("load plan (discovered in %.2f s): %s", time.monotonic() - started, names)
        return _PLANS[key]


class BatchwiseUser(GrpcUser):
    """Sends the plan's pre-serialized requests through the intercepted channel; failures are recorded, not raised.

    TF Serving's API; subclasses set `protocol` to send another door's plan.
    """

    protocol = "tfserving_grpc"

    def wait_time(self) -> float:
        return self.environment.parsed_options.think_time_ms / 1000

    def on_start(self) -> None:
        plan = _plan_or_quit(self.environment, self.target, self.protocol, "grpc")
        if plan is None:
            return
        self.timeout_s = self.environment.parsed_options.request_timeout_s
        self.rng = random.Random()
        self.plan = plan
        self.calls = {
            scenario: (self.raw_method(scenario.method), (*scenario.metadata, (NAME_KEY, scenario.name)))
            for scenario in plan.predicts + plan.metadata
        }

    @task
    def send(self) -> None:
        scenario = self.plan.pick(self.rng)
        call, metadata = self.calls[scenario]
        with contextlib.suppress(grpc.RpcError):  # the interceptor has recorded the failure
            call(scenario.payload, timeout=self.timeout_s, metadata=metadata)


class V2GrpcUser(BatchwiseUser):
    """The same load through the Open Inference Protocol (v2) door: ModelInfer (raw contents) and ModelMetadata."""

    protocol = "v2_grpc"


class RestUser(FastHttpUser):
    """TF Serving REST (JSON) from a keep-alive HTTP/1.1 connection per user: the plan's pre-built bodies,
    sent back to back. Non-2xx replies are recorded as failures by locust's HTTP client."""

    def __init__(self, environment) -> None:
        options = environment.parsed_options
        base = options.rest_host or (self.host or "")
        if not base.startswith(("http://", "https://")):
            raise LocustError("RestUser needs --rest-host http://HOST:PORT (or an http:// --host)")
        self.host = base.rstrip("/")  # the runner sets the class host to --host (the gRPC target): not ours
        self.network_timeout = self.connection_timeout = options.request_timeout_s
        super().__init__(environment)

    def wait_time(self) -> float:
        return self.environment.parsed_options.think_time_ms / 1000

    def on_start(self) -> None:
        self.plan = _plan_or_quit(self.environment, self.host, "tfserving_rest", "REST")
        self.rng = random.Random()

    @task
    def send(self) -> None:
        if self.plan is None:
            return
        scenario = self.plan.pick(self.rng)
        self.client.request(scenario.method, scenario.path, data=scenario.body, headers=dict(scenario.headers),
                            name=scenario.name)  # fmt: skip


def _plan_or_quit(environment, target: str, protocol: str, request_type: str) -> Plan | None:
    """The plan, or None after recording the discovery failure and stopping the run."""
    try:
        return plan_for(environment, target, protocol)
    except Exception as exc:
        LOG.error("cannot plan the load test against %s: %s", target, exc)
        environment.events.request.fire(
            request_type=request_type, name="discovery", response_time=0, response_length=0, exception=exc, context={},
        )
        environment.runner.quit()
        return None


@events.quitting.add_listener
def check_thresholds(environment, **_kwargs) -> None:
    """Set the exit code from the thresholds (on the master or a local runner; workers have partial stats)."""
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return
    total = environment.stats.total
    thresholds = Thresholds(options.max_failure_ratio, options.max_p95_ms, options.max_p99_ms, options.min_rps)
    failed = thresholds.violations(total)
    if environment.runner is not None and environment.runner.exceptions:
        failed.append(f"{len(environment.runner.exceptions)} distinct exceptions in user code")
    summary = (
        f"requests={total.num_requests} failure_ratio={total.fail_ratio:.4f} rps={total.total_rps:.1f} "
        f"p50={total.get_response_time_percentile(0.5)}ms p95={total.get_response_time_percentile(0.95)}ms "
        f"p99={total.get_response_time_percentile(0.99)}ms"
    )
    for message in failed:
        LOG.error("THRESHOLD FAILED: %s", message)
    LOG.info("%s: %s", "FAILED" if failed else "PASSED", summary)
    environment.process_exit_code = 1 if failed else 0
